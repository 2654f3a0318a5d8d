"""Identifiers.

Every id the platform mints is a UUIDv7: unique without coordination and ordered by creation
time, so ``ORDER BY id`` is ``ORDER BY created``, and indexes stay append-mostly.
"""

from __future__ import annotations

import uuid

from uuid_utils.compat import uuid7


def new_id() -> uuid.UUID:
    """A new UUIDv7."""
    return uuid7()


def parse_id(value: str | uuid.UUID) -> uuid.UUID | None:
    """``value`` as a UUID, or None when it is not one (for ids taken from URLs)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None
