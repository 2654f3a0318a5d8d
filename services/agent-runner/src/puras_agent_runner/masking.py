"""Cutting what events show to size. Secret values are masked with the function runner's
:class:`puras_common.secret_delivery.SecretMask` before anything is cut."""

from __future__ import annotations

from typing import Any


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
