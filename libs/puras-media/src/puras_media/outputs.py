"""Finding the output files in a provider's response.

Auto-detection looks for file objects (``{"url": …}``) or URL strings under the keys media
models use (``video``, ``images``, ``image``, ``audio`` …), preferring those that match the
call's kind. When a model answers in an unusual shape, ``output_url_path`` names the place in
jq style: ``video.url``, ``.images[0].url``, ``outputs[].asset.url`` (``[]`` takes every item),
``["odd key"].url``.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from puras_media.errors import MediaError

_TOKEN = re.compile(
    r"""\s*(?:\.?([A-Za-z_][A-Za-z0-9_\-]*)|\[\s*(-?\d+)?\s*\]|\[\s*"((?:[^"\\]|\\.)*)"\s*\])"""
)
MAX_PATH_CHARS = 500

FILE_KEYS: dict[str, tuple[str, ...]] = {
    "video": ("video", "videos"),
    "image": ("images", "image"),
    "audio": ("audio", "audios", "audio_file", "audio_url"),
}
GENERIC_KEYS = ("output", "outputs", "file", "files", "result", "results", "media")
DEFAULT_EXTENSION = {"image": ".png", "video": ".mp4", "audio": ".mp3"}
_EXTENSION_OF_TYPE = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/ogg": ".ogg",
    "audio/flac": ".flac",
    "audio/aac": ".aac",
    "audio/mp4": ".m4a",
}
_KNOWN_EXTENSIONS = frozenset(_EXTENSION_OF_TYPE.values()) | {".jpeg"}


@dataclass(frozen=True)
class OutputFile:
    """One file the response points at, with what the response says about it."""

    url: str
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    duration: str | None = None
    """Seconds, as the response states them (a decimal string)."""


Step = str | int | None
"""A key, an index, or None for "every item"."""


def parse_path(text: str) -> list[Step]:
    """``"outputs[0].asset.url"`` → ``["outputs", 0, "asset", "url"]``; MediaError on bad syntax."""
    if not isinstance(text, str) or not text.strip():
        raise MediaError(
            "invalid_request",
            "output_url_path must be a non-empty string such as 'video.url'",
            pointer="/output_url_path",
        )
    if len(text) > MAX_PATH_CHARS:
        raise MediaError(
            "invalid_request",
            f"output_url_path is {len(text)} characters; the limit is {MAX_PATH_CHARS}",
            pointer="/output_url_path",
        )
    steps: list[Step] = []
    position = 0
    source = text.strip()
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None or match.end() == position:
            raise MediaError(
                "invalid_request",
                f"output_url_path {text!r} is not a jq-style path (like 'images[0].url'): unexpected {source[position : position + 10]!r} at character {position}",
                pointer="/output_url_path",
            )
        name, index, quoted = match.groups()
        if name is not None:
            steps.append(name)
        elif quoted is not None:
            steps.append(re.sub(r"\\(.)", r"\1", quoted))
        else:
            steps.append(int(index) if index is not None else None)
        position = match.end()
    return steps


def select(body: Any, steps: list[Step]) -> list[Any]:
    """Every value ``steps`` reach in ``body`` (``[]`` fans out)."""
    current = [body]
    for step in steps:
        following: list[Any] = []
        for node in current:
            if step is None:
                following.extend(node if isinstance(node, list) else [])
            elif isinstance(step, int):
                if isinstance(node, list) and -len(node) <= step < len(node):
                    following.append(node[step])
            elif isinstance(node, dict) and step in node:
                following.append(node[step])
        current = following
    return current


def _file(value: Any) -> OutputFile | None:
    if isinstance(value, str) and value.startswith(("http://", "https://", "data:")):
        return OutputFile(value)
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        duration = value.get("duration")
        return OutputFile(
            value["url"],
            content_type=value.get("content_type")
            if isinstance(value.get("content_type"), str)
            else None,
            width=value.get("width") if isinstance(value.get("width"), int) else None,
            height=value.get("height") if isinstance(value.get("height"), int) else None,
            duration=str(duration)
            if isinstance(duration, int | float) and not isinstance(duration, bool)
            else None,
        )
    return None


def _files_under(value: Any) -> list[OutputFile]:
    items = value if isinstance(value, list) else [value]
    return [f for f in (_file(item) for item in items) if f is not None]


def find_outputs(body: Any, *, kind: str, path: str | None) -> tuple[list[OutputFile], str | None]:
    """The output files of a response, and the top-level key they were under: at ``path`` when
    given, else auto-detected for ``kind``."""
    if path is not None:
        steps = parse_path(path)
        found = [f for value in select(body, steps) for f in _files_under(value)]
        if not found:
            raise MediaError(
                "no_output",
                f"output_url_path {path!r} finds no URL in the response; its shape is {shape(body)}",
            )
        return found, steps[0] if steps and isinstance(steps[0], str) else None
    if not isinstance(body, dict):
        raise MediaError("no_output", f"the response is not an object; its shape is {shape(body)}")
    order = [
        *FILE_KEYS.get(kind, ()),
        *(k for keys in FILE_KEYS.values() for k in keys),
        *GENERIC_KEYS,
    ]
    for key in dict.fromkeys(order):
        if key in body and (found := _files_under(body[key])):
            return found, key
    raise MediaError(
        "no_output",
        f"no output file found in the response (looked under {', '.join(dict.fromkeys(order))}); "
        f"its shape is {shape(body)}; point at the URL with output_url_path",
    )


def meta_of(body: Any, outputs_key: str | None) -> dict[str, Any]:
    """Everything in the response but the output files themselves (seed, timings, flags)."""
    if not isinstance(body, dict):
        return {}
    return {k: v for k, v in body.items() if k != outputs_key}


def shape(value: Any, depth: int = 0) -> str:
    """The structure of a response without its values (so an error never leaks a file URL)."""
    if depth > 4:
        return "…"
    if isinstance(value, dict):
        inner = ", ".join(f"{k}: {shape(v, depth + 1)}" for k, v in list(value.items())[:12])
        return "{" + inner + (", …" if len(value) > 12 else "") + "}"
    if isinstance(value, list):
        return "[" + (shape(value[0], depth + 1) if value else "") + "]"
    return type(value).__name__ if value is not None else "null"


def extension_for(output: OutputFile, *, kind: str, served_type: str | None = None) -> str:
    """The file's extension: from the URL's name, else the declared or served content type, else
    the kind's usual one. Models do not always answer with what ``kind`` suggests (``.webp`` for
    an image), so the saved name follows the response."""
    if not output.url.startswith("data:"):
        name = unquote(urlsplit(output.url).path.rsplit("/", 1)[-1]).lower()
        if "." in name:
            ext = "." + name.rsplit(".", 1)[-1]
            if ext in _KNOWN_EXTENSIONS:
                return ".jpg" if ext == ".jpeg" else ext
    for declared in (output.content_type, served_type):
        if declared:
            media_type = declared.split(";")[0].strip().lower()
            if media_type in _EXTENSION_OF_TYPE:
                return _EXTENSION_OF_TYPE[media_type]
            guessed = mimetypes.guess_extension(media_type)
            if guessed:
                return guessed
    return DEFAULT_EXTENSION.get(kind, ".bin")


def content_type_for(extension: str) -> str:
    for media_type, ext in _EXTENSION_OF_TYPE.items():
        if ext == extension:
            return media_type
    return mimetypes.guess_type(f"x{extension}")[0] or "application/octet-stream"
