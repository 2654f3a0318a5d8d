"""The model-portable helpers: ``media.generate_image``, ``generate_video``,
``generate_audio`` and ``transcribe`` resolved to one concrete slug and the inputs that slug
takes, with a warning for everything the chosen model cannot honour.

* ``model`` is a family (``bytedance/seedance``), a concrete slug, or ``auto``.
* The mode comes from the inputs: video is lip-sync with ``lipsync_audio`` (+ ``image``),
  reference-to-video with ``refs``, image-to-video with ``image``, else text-to-video; an image
  is an edit with ``refs``. A family that cannot do the mode is an error that names the
  families that can (only Kling does lip-sync).
* ``@Image1`` … in the prompt point at ``refs`` (1-indexed): kept for models that read the tags,
  rewritten to prose ("the first reference image") for the rest.
* ``duration`` snaps to the model's allowed set, ``last_frame`` goes only where the model has an
  end frame, and aspect ratios and resolutions only where the model takes them; each change or
  omission is a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from puras_media.catalog import Catalogue, Route
from puras_media.catalog import catalogue as default_catalogue
from puras_media.errors import PortableError
from puras_media.service import MediaRequest

_TAG: Final = re.compile(r"@Image(\d+)\b")
_AUDIO_TAG: Final = re.compile(r"\[[A-Za-z][A-Za-z ,'\-]{0,40}\]")
ORDINALS: Final = (
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
)
MODE_NAMES: Final = {
    "image": "text-to-image",
    "edit": "image editing",
    "t2v": "text-to-video",
    "i2v": "image-to-video",
    "r2v": "reference-to-video",
    "lipsync": "lip-sync",
    "tts": "text-to-speech",
    "stt": "transcription",
}
_HELPER_NAMES: Final = {
    "image": "generate_image",
    "video": "generate_video",
    "audio": "generate_audio",
    "transcribe": "transcribe",
}
MAX_KEYTERMS: Final = 100
MAX_KEYTERM_CHARS: Final = 50


@dataclass(frozen=True)
class Resolved:
    """A helper call made concrete: what ``media.run`` will be called with, and why it differs."""

    request: MediaRequest
    mode: str
    warnings: tuple[str, ...] = ()


class _Notes:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, text: str) -> None:
        self.items.append(text)


# -- choosing the model ---------------------------------------------------------------------


def pick(
    catalogue: Catalogue, model: Any, mode: str, *, helper: str, modes: tuple[str, ...]
) -> Route:
    """The slug for ``model`` (a family, a slug or ``auto``) in ``mode``."""
    if not isinstance(model, str) or not model:
        raise PortableError(
            f"model must be a family, a model slug or 'auto', not {model!r}", pointer="/model"
        )
    if model == "auto":
        default = catalogue.defaults.get("lipsync" if mode == "lipsync" else helper)
        model = default or ""
    families = catalogue.families(modes)
    if (
        model in families
    ):  # a family first: google/nano-banana names both the family and its text-to-image slug
        route = catalogue.in_family(model, mode)
        if route is None:
            able = _able(catalogue, mode)
            if mode == "lipsync":
                raise PortableError(
                    f"{model} cannot do lip-sync; only {' and '.join(able)} does", pointer="/model"
                )
            raise PortableError(
                f"{model} cannot do {MODE_NAMES[mode]}; families that can: {', '.join(able)}",
                pointer="/model",
            )
        return route
    route = catalogue.get(model)
    if route is None:
        raise PortableError(
            f"unknown model family {model!r} for {_HELPER_NAMES[helper]}; use one of: {', '.join(families)}, or 'auto'",
            pointer="/model",
        )
    if route.mode not in modes:
        raise PortableError(
            f"{model} is a {MODE_NAMES[route.mode]} model; {_HELPER_NAMES[helper]} cannot use it",
            pointer="/model",
        )
    if route.mode != mode:
        sibling = catalogue.in_family(route.family, mode)
        hint = (
            f"use {sibling.slug} or the family {route.family}"
            if sibling
            else f"families that can: {', '.join(_able(catalogue, mode))}"
        )
        raise PortableError(
            f"{model} is a {MODE_NAMES[route.mode]} model, but these inputs ask for {MODE_NAMES[mode]}; {hint}",
            pointer="/model",
        )
    return route


def _able(catalogue: Catalogue, mode: str) -> list[str]:
    return catalogue.families((mode,))


# -- shared checks --------------------------------------------------------------------------


def _url(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.startswith(("https://", "http://", "data:")):
        raise PortableError(
            f"{name} must be a URL (sign a drive path with puras.drive.url first), not {str(value)[:80]!r}",
            pointer=f"/{name}",
        )
    return value


def _urls(values: Any, name: str) -> list[str]:
    if not isinstance(values, list | tuple) or not values:
        raise PortableError(f"{name} must be a non-empty list of URLs", pointer=f"/{name}")
    return [_url(v, f"{name}[{i}]") for i, v in enumerate(values)]


def ordinal(n: int) -> str:
    return (
        f"the {ORDINALS[n - 1]} reference image" if n <= len(ORDINALS) else f"reference image {n}"
    )


def rewrite_tags(prompt: str, *, refs: int, keep: bool) -> str:
    """``@Image1`` … checked against ``refs`` and kept, or rewritten to prose."""
    for match in _TAG.finditer(prompt):
        n = int(match.group(1))
        if refs == 0:
            raise PortableError(
                f"the prompt mentions @Image{n}, but no refs were given", pointer="/prompt"
            )
        if not 1 <= n <= refs:
            raise PortableError(
                f"the prompt mentions @Image{n}, but only {refs} ref{'s' if refs != 1 else ''} were given (@Image1…@Image{refs})",
                pointer="/prompt",
            )
    if keep:
        return prompt
    return _TAG.sub(lambda m: ordinal(int(m.group(1))), prompt)


def _choose(
    route: Route,
    which: str,
    wanted: str | None,
    notes: _Notes,
    inputs: dict[str, Any],
    taken: set[str],
) -> None:
    """Put an aspect ratio or resolution where the model takes it, or note that it cannot."""
    if wanted is None:
        return
    choice = route.aspect if which == "aspect_ratio" else route.resolution
    if choice is None:
        notes.add(f"{which} {wanted!r} is ignored: {route.slug} does not take one")
        return
    value = choice.value_for(str(wanted))
    if value is None:
        notes.add(
            f"{which} {wanted!r} is ignored: {route.slug} takes {', '.join(choice.accepts())}"
        )
        return
    if choice.field in taken:
        notes.add(
            f"{which} {wanted!r} is ignored: {route.slug} sets {choice.field} from the aspect ratio already"
        )
        return
    inputs[choice.field] = value
    taken.add(choice.field)


def snap(seconds: int | float, allowed: tuple[int, ...]) -> int:
    """The allowed duration nearest ``seconds`` (the longer on a tie)."""
    return min(allowed, key=lambda a: (abs(a - seconds), -a))


# -- the helpers ----------------------------------------------------------------------------


def generate_image(
    prompt: Any,
    *,
    routes: Catalogue | None = None,
    model: Any = "auto",
    refs: Any = None,
    aspect_ratio: str | None = None,
    resolution: str | None = None,
    n: Any = None,
    output_path: str | None = None,
) -> Resolved:
    catalogue = routes or default_catalogue()
    if not isinstance(prompt, str) or not prompt.strip():
        raise PortableError(
            "generate_image needs a prompt: what to draw, or how to edit the refs",
            pointer="/prompt",
        )
    references = _urls(refs, "refs") if refs is not None else []
    mode = "edit" if references else "image"
    route = pick(catalogue, model, mode, helper="image", modes=("image", "edit"))
    notes = _Notes()
    inputs: dict[str, Any] = {
        route.prompt: rewrite_tags(prompt, refs=len(references), keep=route.tags == "keep")
    }
    if references:
        assert route.refs is not None
        if len(references) > route.refs.max:
            raise PortableError(
                f"{route.slug} takes at most {route.refs.max} reference images; {len(references)} were given",
                pointer="/refs",
            )
        inputs[route.refs.field] = references
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise PortableError(f"n must be a whole number of images ≥ 1, not {n!r}", pointer="/n")
        if route.n is None:
            raise PortableError(f"{route.slug} makes one image per call", pointer="/n")
        if n > route.n.max:
            raise PortableError(
                f"{route.slug} makes at most {route.n.max} images per call; n={n}", pointer="/n"
            )
        inputs[route.n.field] = n
    taken: set[str] = set()
    _choose(route, "aspect_ratio", aspect_ratio, notes, inputs, taken)
    _choose(route, "resolution", resolution, notes, inputs, taken)
    return Resolved(
        MediaRequest(route.slug, inputs, output_path=output_path, kind="image"),
        mode,
        tuple(notes.items),
    )


def video_mode(*, image: Any, refs: Any, lipsync_audio: Any) -> str:
    """lip-sync ← ``lipsync_audio``; reference-to-video ← ``refs``; image-to-video ← ``image``;
    else text-to-video."""
    if lipsync_audio is not None:
        return "lipsync"
    if refs is not None:
        return "r2v"
    if image is not None:
        return "i2v"
    return "t2v"


def generate_video(
    prompt: Any = "",
    *,
    routes: Catalogue | None = None,
    model: Any = "auto",
    image: Any = None,
    last_frame: Any = None,
    refs: Any = None,
    lipsync_audio: Any = None,
    duration: Any = None,
    aspect_ratio: str | None = None,
    resolution: str | None = None,
    audio: bool = False,
    output_path: str | None = None,
) -> Resolved:
    catalogue = routes or default_catalogue()
    if not isinstance(prompt, str):
        raise PortableError("prompt must be a string", pointer="/prompt")
    mode = video_mode(image=image, refs=refs, lipsync_audio=lipsync_audio)
    route = pick(catalogue, model, mode, helper="video", modes=("t2v", "i2v", "r2v", "lipsync"))
    notes = _Notes()
    inputs: dict[str, Any] = {}
    if mode == "lipsync":
        return _lipsync(
            route,
            prompt,
            image=image,
            lipsync_audio=lipsync_audio,
            refs=refs,
            last_frame=last_frame,
            duration=duration,
            output_path=output_path,
            notes=notes,
        )
    references = _urls(refs, "refs") if refs is not None else []
    if mode == "t2v" and not prompt.strip():
        raise PortableError("text-to-video needs a prompt describing the scene", pointer="/prompt")
    if prompt:
        inputs[route.prompt] = rewrite_tags(prompt, refs=len(references), keep=route.tags == "keep")
    if mode == "i2v":
        assert route.image is not None
        inputs[route.image] = _url(image, "image")
    if mode == "r2v":
        assert route.refs is not None
        if len(references) > route.refs.max:
            raise PortableError(
                f"{route.slug} takes at most {route.refs.max} reference images; {len(references)} were given",
                pointer="/refs",
            )
        inputs[route.refs.field] = references
        if image is not None:
            notes.add("image is ignored in reference-to-video mode: put the still in refs instead")
    if last_frame is not None:
        if route.last_frame:
            inputs[route.last_frame] = _url(last_frame, "last_frame")
        else:
            notes.add(
                f"last_frame is ignored: {route.family} cannot end on a set frame (Seedance and Kling can)"
            )
    if duration is not None:
        _duration(route, duration, inputs, notes)
    taken: set[str] = set()
    _choose(route, "aspect_ratio", aspect_ratio, notes, inputs, taken)
    _choose(route, "resolution", resolution, notes, inputs, taken)
    if route.audio:
        inputs[route.audio] = bool(audio)
    elif audio:
        notes.add(f"audio is ignored: {route.slug} cannot generate audio")
    return Resolved(
        MediaRequest(route.slug, inputs, output_path=output_path, kind="video"),
        mode,
        tuple(notes.items),
    )


def _duration(route: Route, duration: Any, inputs: dict[str, Any], notes: _Notes) -> None:
    if isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0:
        raise PortableError(
            f"duration must be a positive number of seconds, not {duration!r}", pointer="/duration"
        )
    if route.duration is None:
        notes.add(f"duration is ignored: {route.slug} decides the length itself")
        return
    allowed = route.duration.allowed
    chosen = snap(duration, allowed)
    if chosen != duration:
        notes.add(
            f"duration {duration:g} s snapped to {chosen} s: {route.slug} makes {_listing(allowed)} s clips"
        )
    inputs[route.duration.field] = route.duration.value(chosen)


def _listing(allowed: tuple[int, ...]) -> str:
    if len(allowed) > 3 and list(allowed) == list(range(allowed[0], allowed[-1] + 1)):
        return f"{allowed[0]}–{allowed[-1]}"
    return ", ".join(str(a) for a in allowed)


def _lipsync(
    route: Route,
    prompt: str,
    *,
    image: Any,
    lipsync_audio: Any,
    refs: Any,
    last_frame: Any,
    duration: Any,
    output_path: str | None,
    notes: _Notes,
) -> Resolved:
    if image is None:
        raise PortableError(
            "lip-sync needs image= (the portrait to animate) as well as lipsync_audio=",
            pointer="/image",
        )
    assert route.image is not None and route.lipsync_audio is not None
    inputs: dict[str, Any] = {
        route.image: _url(image, "image"),
        route.lipsync_audio: _url(lipsync_audio, "lipsync_audio"),
    }
    if prompt:
        inputs[route.prompt] = rewrite_tags(prompt, refs=0, keep=False)
    if duration is not None:
        notes.add("duration is ignored for lip-sync: the clip is as long as the audio")
    if refs is not None:
        notes.add("refs are ignored for lip-sync")
    if last_frame is not None:
        notes.add("last_frame is ignored for lip-sync")
    return Resolved(
        MediaRequest(route.slug, inputs, output_path=output_path, kind="video"),
        "lipsync",
        tuple(notes.items),
    )


def generate_audio(
    text: Any,
    *,
    routes: Catalogue | None = None,
    model: Any = "auto",
    voice: str | None = None,
    language: str | None = None,
    stability: Any = None,
    similarity_boost: Any = None,
    style: Any = None,
    speed: Any = None,
    output_path: str | None = None,
) -> Resolved:
    catalogue = routes or default_catalogue()
    if not isinstance(text, str) or not text.strip():
        raise PortableError("generate_audio needs text: the words to speak", pointer="/text")
    route = pick(catalogue, model, "tts", helper="audio", modes=("tts",))
    notes = _Notes()
    inputs: dict[str, Any] = {"text": text}
    if voice is not None:
        inputs["voice"] = voice
    if language is not None:
        if not isinstance(language, str) or not re.fullmatch(r"[a-z]{2}", language):
            raise PortableError(
                f"language must be an ISO 639-1 code such as 'en', not {language!r}",
                pointer="/language",
            )
        inputs["language_code"] = language
    settings: dict[str, Any] = {}
    for name, value in (
        ("stability", stability),
        ("similarity_boost", similarity_boost),
        ("style", style),
    ):
        if value is not None:
            settings[name] = _unit_interval(value, name)
    if speed is not None:
        if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.7 <= speed <= 1.2:
            raise PortableError(
                f"speed must be between 0.7 and 1.2, not {speed!r}", pointer="/speed"
            )
        settings["speed"] = speed
    if route.reads_audio_tags:
        for name in ("similarity_boost", "style", "speed"):
            if settings.pop(name, None) is not None:
                notes.add(
                    f"{name} is ignored on {route.slug}; pass model='elevenlabs/tts-v2' to use it (audio tags then are not read)"
                )
    elif (tag := _AUDIO_TAG.search(text)) is not None:
        notes.add(
            f"{route.slug} does not read audio tags: bracketed cues such as {tag.group(0)} may be spoken"
        )
    if settings:
        inputs["voice_settings"] = settings
    return Resolved(
        MediaRequest(route.slug, inputs, output_path=output_path, kind="audio"),
        "tts",
        tuple(notes.items),
    )


def _unit_interval(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise PortableError(f"{name} must be between 0 and 1, not {value!r}", pointer=f"/{name}")
    return value


def transcribe(
    audio: Any,
    *,
    routes: Catalogue | None = None,
    keyterms: Any = None,
    language_code: str | None = None,
    model: Any = "elevenlabs/scribe-v2",
) -> Resolved:
    catalogue = routes or default_catalogue()
    if not isinstance(audio, str) or not audio.startswith(("https://", "http://", "data:")):
        raise PortableError(
            f"audio must be an https URL the model can fetch or a data: URI, not {str(audio)[:80]!r} "
            "(sign a drive path with puras.drive.url first)",
            pointer="/audio",
        )
    route = pick(
        catalogue,
        "elevenlabs/scribe-v2" if model == "auto" else model,
        "stt",
        helper="transcribe",
        modes=("stt",),
    )
    inputs: dict[str, Any] = {"audio": audio}
    if keyterms is not None:
        if not isinstance(keyterms, list | tuple) or not all(
            isinstance(k, str) and k.strip() for k in keyterms
        ):
            raise PortableError("keyterms must be a list of non-empty strings", pointer="/keyterms")
        if len(keyterms) > MAX_KEYTERMS:
            raise PortableError(
                f"keyterms has {len(keyterms)} entries; the limit is {MAX_KEYTERMS}",
                pointer="/keyterms",
            )
        long = next((k for k in keyterms if len(k) > MAX_KEYTERM_CHARS), None)
        if long is not None:
            raise PortableError(
                f"keyterm {long[:60]!r} has {len(long)} characters; the limit is {MAX_KEYTERM_CHARS}",
                pointer="/keyterms",
            )
        inputs["keyterms"] = list(keyterms)
    if language_code is not None:
        if not isinstance(language_code, str) or not re.fullmatch(r"[a-z]{2,3}", language_code):
            raise PortableError(
                f"language_code must be an ISO 639-1 code such as 'en', not {language_code!r}",
                pointer="/language_code",
            )
        inputs["language_code"] = language_code
    return Resolved(MediaRequest(route.slug, inputs), "stt")


HELPERS: Final = {
    "image": generate_image,
    "video": generate_video,
    "audio": generate_audio,
    "transcribe": transcribe,
}
"""The helpers by the name their gateway endpoint takes."""
