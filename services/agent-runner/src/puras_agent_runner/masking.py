"""Secret values never leave a job in events, errors or logs: they are replaced by ``***``."""

from __future__ import annotations

from typing import Any, Final

MASK: Final = "***"
MIN_SECRET_CHARS: Final = 4
"""Shorter values are not masked: replacing every "a" or "1" would garble everything and hide nothing."""


class Masker:
    """Replaces a job's secret values wherever they appear."""

    def __init__(self, secrets: dict[str, str] | None = None) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self.values = sorted({v for v in (secrets or {}).values() if len(v) >= MIN_SECRET_CHARS}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.values:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def value(self, value: Any) -> Any:
        """``value`` with every string in it masked (dicts and lists walked)."""
        if not self.values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"… [{len(text) - limit} more characters]"


def clip_value(value: Any, limit: int) -> Any:
    """Every string in ``value`` cut to ``limit`` characters."""
    if isinstance(value, str):
        return clip(value, limit)
    if isinstance(value, dict):
        return {k: clip_value(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clip_value(v, limit) for v in value]
    return value
