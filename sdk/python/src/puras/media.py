"""``puras.media``: media generation from inside a job, billed to the job's workspace.

``run`` calls one registered model slug with inputs passed through unchanged; the
``generate_image`` / ``generate_video`` / ``generate_audio`` / ``transcribe`` helpers are
model-portable: the platform picks the concrete model of a family and adapts the inputs
(``warnings`` say what it changed, and are also issued as :class:`MediaWarning`). Each call
waits for the result; the file lands in the workspace's drive (``drive_path``) with a signed
``output_url``. Standard library only: jobs import it without the platform's packages.
"""

from __future__ import annotations

import warnings
from typing import Any

from puras import _jobapi
from puras.errors import PurasAPIError, PurasError

TIMEOUT_SECONDS = 1800.0
"""How long a call may wait for its answer: generation (up to the platform's own limit,
20 minutes by default) plus the download into the drive."""

__all__ = [
    "MediaError",
    "MediaInputError",
    "MediaWarning",
    "generate_audio",
    "generate_image",
    "generate_video",
    "run",
    "transcribe",
]


class MediaWarning(UserWarning):
    """A portable helper changed or dropped an argument for the chosen model."""


class MediaError(PurasError):
    """A media call that produced nothing (and was not billed). ``code`` is stable:
    ``unknown_model``, ``invalid_request``, ``upstream_rejected``, ``upstream_failed``,
    ``upstream_timeout``, ``no_output``, ``download_failed``, ``storage_failed``,
    ``insufficient_credits``, ``spend_cap_reached``."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int,
        model: str | None = None,
        request_id: str | None = None,
        pointer: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.model = model
        self.request_id = request_id
        self.pointer = pointer


class MediaInputError(MediaError, ValueError):
    """Arguments no model could take (an unknown slug, a mode the family cannot do …)."""


def _post(route: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        result: dict[str, Any] = _jobapi.call(
            "POST", route, body, timeout=TIMEOUT_SECONDS, what="puras.media"
        )
        return result
    except PurasAPIError as exc:
        details = exc.details if isinstance(exc.details, dict) else {}
        pointer = details.get("pointer")
        if pointer is None and isinstance(exc.details, list) and exc.details:
            pointer = exc.details[0].get("pointer")
        code = details.get("media_code") or exc.code
        cls = (
            MediaInputError
            if exc.status == 400 and code in ("unknown_model", "invalid_request")
            else MediaError
        )
        raise cls(
            code,
            exc.message,
            status=exc.status,
            model=details.get("model"),
            request_id=details.get("request_id"),
            pointer=pointer,
        ) from None


def run(
    model: str,
    inputs: dict[str, Any] | None = None,
    *,
    output_path: str | None = None,
    output_url_path: str | None = None,
    kind: str = "auto",
    **kwargs: Any,
) -> dict[str, Any]:
    """Call a registered media model with any inputs (``kwargs`` are merged into them and win).

    Returns ``{model, kind, drive_path, output_url, request_id, billed_micros, billed_usd,
    meta}``, plus ``files`` when the call made several. Raises :class:`MediaError`.
    """
    body: dict[str, Any] = {"model": model, "inputs": {**(inputs or {}), **kwargs}, "kind": kind}
    if output_path is not None:
        body["output_path"] = output_path
    if output_url_path is not None:
        body["output_url_path"] = output_url_path
    return _post("/v1/media/generate", body)


def _helper(route: str, args: dict[str, Any]) -> dict[str, Any]:
    result = _post(route, {k: v for k, v in args.items() if v is not None})
    for note in result.get("warnings") or ():
        warnings.warn(note, MediaWarning, stacklevel=3)
    return result


def generate_image(
    prompt: str,
    *,
    model: str = "auto",
    refs: list[str] | None = None,
    aspect_ratio: str | None = None,
    resolution: str | None = None,
    n: int | None = None,
    output_path: str | None = None,
) -> dict[str, Any]:
    """Generate an image from a prompt — model-portable.

    ``refs`` (image URLs) make it an edit; address them in the prompt as ``@Image1``,
    ``@Image2`` … (kept for models that read the tags, rewritten to prose for the rest).
    ``model`` is a family (``google/nano-banana``, ``openai/gpt-image``, ``bytedance/seedream``,
    ``google/imagen``, ``kuaishou/kling``) or ``"auto"``. Returns the same shape as :func:`run`.
    """
    return _helper(
        "/v1/media/images",
        {
            "prompt": prompt,
            "model": model,
            "refs": refs,
            "aspect_ratio": aspect_ratio,
            "resolution": resolution,
            "n": n,
            "output_path": output_path,
        },
    )


def generate_video(
    prompt: str = "",
    *,
    model: str = "auto",
    image: str | None = None,
    last_frame: str | None = None,
    refs: list[str] | None = None,
    lipsync_audio: str | None = None,
    duration: int | None = None,
    aspect_ratio: str | None = None,
    resolution: str | None = None,
    audio: bool = False,
    output_path: str | None = None,
) -> dict[str, Any]:
    """Generate a video — model-portable. The inputs fix the mode: ``lipsync_audio`` (+
    ``image``) → lip-sync (Kling only); ``refs`` → reference-to-video; ``image`` →
    image-to-video; neither → text-to-video. ``duration`` snaps to the model's allowed set;
    ``last_frame`` is honoured by Seedance and Kling. Returns the same shape as :func:`run`."""
    return _helper(
        "/v1/media/videos",
        {
            "prompt": prompt,
            "model": model,
            "image": image,
            "last_frame": last_frame,
            "refs": refs,
            "lipsync_audio": lipsync_audio,
            "duration": duration,
            "aspect_ratio": aspect_ratio,
            "resolution": resolution,
            "audio": audio,
            "output_path": output_path,
        },
    )


def generate_audio(
    text: str,
    *,
    model: str = "auto",
    voice: str | None = None,
    language: str | None = None,
    stability: float | None = None,
    similarity_boost: float | None = None,
    style: float | None = None,
    speed: float | None = None,
    output_path: str | None = None,
) -> dict[str, Any]:
    """Text to speech (billed per character) — model-portable; ``auto`` and ``elevenlabs/tts``
    are ElevenLabs v3, which acts out ``[whispers]``-style tags. ``similarity_boost``, ``style``
    and ``speed`` need ``model="elevenlabs/tts-v2"``. Returns the same shape as :func:`run`."""
    return _helper(
        "/v1/media/speech",
        {
            "text": text,
            "model": model,
            "voice": voice,
            "language": language,
            "stability": stability,
            "similarity_boost": similarity_boost,
            "style": style,
            "speed": speed,
            "output_path": output_path,
        },
    )


def transcribe(
    audio: str,
    *,
    keyterms: list[str] | None = None,
    language_code: str | None = None,
    model: str = "elevenlabs/scribe-v2",
) -> dict[str, Any]:
    """Speech to text (billed per second of audio): ``{text, words, language_code, …}``, each
    word with its start and end in seconds. There is no file (``drive_path`` is empty).
    ``audio`` is an https URL the model can fetch, or a ``data:`` URI."""
    return _helper(
        "/v1/media/transcriptions",
        {"audio": audio, "keyterms": keyterms, "language_code": language_code, "model": model},
    )
