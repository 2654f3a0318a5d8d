"""The LLM model catalogue: which slugs a skill may name, who serves each, and what it can read.

Data, not code: ``catalog/models.yaml``. Rates are kept as exact decimal strings of upstream
USD per 1M tokens; billing turns them into micros with integer arithmetic.

An operator adds self-hosted models served by any OpenAI-compatible endpoint with
``PURAS_LOCAL_MODELS``, a JSON object ``{"<name>": {"base_url": ..., "upstream": ..., "vision":
false, "pdf": false, "input": "0", "output": "0"}}``; each becomes the slug ``local/<name>``,
priced at zero unless rates are given. Every service reads the same variable, so a push naming
``local/<name>`` is accepted, run and priced alike.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Literal

import yaml

Provider = Literal["anthropic", "openai", "gemini", "local"]


@dataclass(frozen=True)
class Model:
    slug: str
    provider: Provider
    upstream: str
    """The provider's own model id."""
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal
    vision: bool
    pdf: bool
    base_url: str | None = None
    """Where a ``local/`` model is served (an OpenAI-compatible API); None for the hosted families."""


@dataclass(frozen=True)
class ModelCatalogue:
    default: str
    models: dict[str, Model]

    def get(self, slug: str) -> Model | None:
        return self.models.get(slug)

    def slugs(self) -> list[str]:
        return sorted(self.models)

    def unknown_message(self, slug: str) -> str:
        """What to say about a slug that is not in the catalogue."""
        close = difflib.get_close_matches(slug, self.slugs(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"unknown model {slug!r}{hint} Available: {', '.join(self.slugs())}"


@cache
def catalogue() -> ModelCatalogue:
    """The catalogue shipped with the platform."""
    data = yaml.safe_load(
        (resources.files("puras_pricing") / "catalog" / "models.yaml").read_text()
    )
    models = {
        slug: Model(
            slug=slug,
            provider=row["provider"],
            upstream=row["upstream"],
            input_usd_per_mtok=Decimal(row["input"]),
            output_usd_per_mtok=Decimal(row["output"]),
            vision=bool(row["vision"]),
            pdf=bool(row["pdf"]),
        )
        for slug, row in data["models"].items()
    }
    models.update(local_models(os.environ.get("PURAS_LOCAL_MODELS", "")))
    if data["default"] not in models:
        raise ValueError(f"default model {data['default']!r} is not in the catalogue")
    return ModelCatalogue(default=data["default"], models=models)


LOCAL_MODELS_ENV = "PURAS_LOCAL_MODELS"


class LocalModelsError(ValueError):
    """``PURAS_LOCAL_MODELS`` is not a JSON object of well-formed endpoint entries."""


def local_models(spec: str) -> dict[str, Model]:
    """The ``local/<name>`` models an operator configured (``PURAS_LOCAL_MODELS``)."""
    if not spec.strip():
        return {}
    try:
        data = json.loads(spec)
    except ValueError as exc:
        raise LocalModelsError(f"{LOCAL_MODELS_ENV} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise LocalModelsError(f"{LOCAL_MODELS_ENV} must be a JSON object of name -> endpoint")
    models: dict[str, Model] = {}
    for name, row in data.items():
        if not isinstance(row, dict) or not isinstance(row.get("base_url"), str):
            raise LocalModelsError(f"{LOCAL_MODELS_ENV}[{name!r}] needs a base_url")
        slug = f"local/{name}"
        models[slug] = Model(
            slug=slug,
            provider="local",
            upstream=str(row.get("upstream") or name),
            input_usd_per_mtok=Decimal(str(row.get("input", "0"))),
            output_usd_per_mtok=Decimal(str(row.get("output", "0"))),
            vision=bool(row.get("vision", False)),
            pdf=bool(row.get("pdf", False)),
            base_url=row["base_url"],
        )
    return models
