"""Served files are inert: only raster images, audio, video, PDF and plain text are shown in
place, and the gateway's relay forces a download for anything else whatever the drive said."""

from __future__ import annotations

import pytest
from puras_common import served


@pytest.mark.parametrize(
    ("content_type", "inline"),
    [
        ("image/png", True),
        ("IMAGE/JPEG; q=1", True),
        ("audio/ogg", True),
        ("video/webm", True),
        ("application/pdf", True),
        ("text/plain; charset=utf-8", True),
        ("image/svg+xml", False),
        ("text/html", False),
        ("application/xhtml+xml", False),
        ("text/xml", False),
        ("text/javascript", False),
        ("application/octet-stream", False),
        ("", False),
        (None, False),
    ],
)
def test_only_the_safe_list_is_inline(content_type: str | None, inline: bool) -> None:
    assert served.shown_inline(content_type) is inline
    headers = served.file_headers("f", content_type)
    assert headers["Content-Disposition"].startswith("inline;" if inline else "attachment;")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == "sandbox; default-src 'none'"


def test_enforce_turns_an_inline_html_answer_into_a_download() -> None:
    upstream = {
        "content-type": "text/html",
        "content-disposition": 'inline; filename="x.html"',
        "x-content-type-options": "whatever",
        "content-length": "5",
    }
    out = served.enforce(upstream)
    assert out["Content-Disposition"] == 'attachment; filename="x.html"'
    assert out["X-Content-Type-Options"] == "nosniff"
    assert out["Content-Security-Policy"] == served.SANDBOX_CSP
    assert out["content-length"] == "5" and "x-content-type-options" not in out
    assert served.enforce({"content-type": "text/html"})["Content-Disposition"] == "attachment"
    kept = served.enforce({"content-type": "image/png", "content-disposition": "inline"})
    assert kept["Content-Disposition"] == "inline"
