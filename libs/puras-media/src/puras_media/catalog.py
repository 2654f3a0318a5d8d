"""The media catalogue: how each priced slug is called (provider, endpoint) and what the portable
helpers may do with it (family, mode, field names, allowed values). Data in
``catalog/models.yaml``; prices stay in :mod:`puras_pricing`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from puras_pricing import media_catalogue

Mode = Literal["image", "edit", "t2v", "i2v", "r2v", "lipsync", "tts", "stt"]
MODES: tuple[str, ...] = ("image", "edit", "t2v", "i2v", "r2v", "lipsync", "tts", "stt")


@dataclass(frozen=True)
class Choice:
    """An input with a closed set of values: ``values`` taken as they are, or ``map``ped."""

    field: str
    values: tuple[str, ...] = ()
    map: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def accepts(self) -> list[str]:
        return list(self.map) or list(self.values)

    def value_for(self, wanted: str) -> str | None:
        if self.map:
            return self.map.get(wanted)
        return wanted if wanted in self.values else None


@dataclass(frozen=True)
class Durations:
    field: str
    allowed: tuple[int, ...]
    format: str = "{n}"

    def value(self, seconds: int) -> str:
        return self.format.format(n=seconds)


@dataclass(frozen=True)
class Limit:
    field: str
    max: int


@dataclass(frozen=True)
class Route:
    """One slug: where its calls go and the shape of its inputs."""

    slug: str
    kind: str
    """image | video | audio | transcript, from the pricing registry."""
    provider: str
    family: str
    mode: Mode
    endpoint: str | None = None
    model_id: str | None = None
    prompt: str = "prompt"
    image: str | None = None
    refs: Limit | None = None
    tags: Literal["keep", "prose"] = "prose"
    last_frame: str | None = None
    lipsync_audio: str | None = None
    duration: Durations | None = None
    aspect: Choice | None = None
    resolution: Choice | None = None
    n: Limit | None = None
    audio: str | None = None
    reads_audio_tags: bool = False


@dataclass(frozen=True)
class Catalogue:
    routes: Mapping[str, Route]
    providers: Mapping[str, Mapping[str, Any]]
    defaults: Mapping[str, str]

    def get(self, slug: str) -> Route | None:
        return self.routes.get(slug)

    def families(self, modes: tuple[str, ...]) -> list[str]:
        """The families that have a slug in any of ``modes``, in catalogue order."""
        return list(dict.fromkeys(r.family for r in self.routes.values() if r.mode in modes))

    def in_family(self, family: str, mode: str) -> Route | None:
        for route in self.routes.values():
            if route.family == family and route.mode == mode:
                return route
        return None

    def modes_of(self, family: str) -> list[str]:
        return [r.mode for r in self.routes.values() if r.family == family]


def _choice(raw: Mapping[str, Any] | None) -> Choice | None:
    if not raw:
        return None
    return Choice(
        raw["field"], tuple(str(v) for v in raw.get("values", ())), dict(raw.get("map", {}))
    )


def _limit(raw: Mapping[str, Any] | None) -> Limit | None:
    return Limit(raw["field"], int(raw["max"])) if raw else None


def from_data(data: Mapping[str, Any], *, endpoints: Mapping[str, str] | None = None) -> Catalogue:
    """Build from the parsed YAML; ``endpoints`` overrides providers' model ids per slug."""
    kinds = {slug: m.kind for slug, m in media_catalogue().models.items()}
    routes: dict[str, Route] = {}
    for slug, row in data["models"].items():
        duration = row.get("duration")
        routes[slug] = Route(
            slug=slug,
            kind=kinds.get(slug, "image"),
            provider=row["provider"],
            family=row["family"],
            mode=row["mode"],
            endpoint=(endpoints or {}).get(slug, row.get("endpoint")),
            model_id=row.get("model_id"),
            prompt=row.get("prompt", "prompt"),
            image=row.get("image"),
            refs=_limit(row.get("refs")),
            tags=row.get("tags", "prose"),
            last_frame=row.get("last_frame"),
            lipsync_audio=row.get("lipsync_audio"),
            duration=Durations(
                duration["field"], tuple(duration["allowed"]), duration.get("format", "{n}")
            )
            if duration
            else None,
            aspect=_choice(row.get("aspect")),
            resolution=_choice(row.get("resolution")),
            n=_limit(row.get("n")),
            audio=row.get("audio"),
            reads_audio_tags=bool(row.get("reads_audio_tags", False)),
        )
    for route in routes.values():
        if route.mode not in MODES:
            raise ValueError(f"{route.slug}: unknown mode {route.mode!r}")
    return Catalogue(
        routes=routes,
        providers=dict(data.get("providers", {})),
        defaults=dict(data.get("defaults", {})),
    )


def parse_endpoints(text: str) -> dict[str, str]:
    """``PURAS_MEDIA_ENDPOINTS``: a JSON object of slug → the provider's model id."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(
            f"PURAS_MEDIA_ENDPOINTS must be a JSON object of slug to endpoint: {exc}"
        ) from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(
            "PURAS_MEDIA_ENDPOINTS must be a JSON object of slug to endpoint (strings)"
        )
    return value


@cache
def _raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        (resources.files("puras_media") / "catalog" / "models.yaml").read_text()
    )
    return data


def catalogue(endpoints_json: str = "") -> Catalogue:
    """The shipped catalogue, with operator overrides of endpoints."""
    return from_data(_raw(), endpoints=parse_endpoints(endpoints_json))
