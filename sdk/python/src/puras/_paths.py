"""Request paths with ids and names in them (standard library only: the in-job runtime uses it)."""

from __future__ import annotations

from urllib.parse import quote


class PathSegmentError(ValueError):
    """An id or name that cannot be one segment of a request path: empty, ``.`` or ``..``."""


def api_path(template: str, *segments: str) -> str:
    """``template`` with each ``{}`` replaced by one segment, percent-encoded whole (``/``,
    ``?``, ``#`` and ``%`` included), so that a value never reaches another route:
    ``api_path("/v1/jobs/{}/input", job_id)``. An empty, ``.`` or ``..`` segment, which URL
    normalisation would drop or resolve, is a :class:`PathSegmentError` (a ``ValueError``)."""
    encoded = []
    for segment in segments:
        text = str(segment)
        if text in ("", ".", ".."):
            raise PathSegmentError(
                f"{text!r} is not an id or name: a request path segment is never empty, '.' or '..'"
            )
        encoded.append(quote(text, safe=""))
    return template.format(*encoded)
