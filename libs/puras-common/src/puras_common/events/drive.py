"""Drive events, on the PLATFORM stream: ``drive.<workspace_id>.<verb>``.

The drive service emits them in the same transaction that records the object's metadata; its
``objects`` projection folds them back, so the table can be dropped and rebuilt from the stream.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from puras_common import streams
from puras_common.envelope import Event, Payload


class ObjectOrigin(Payload):
    """Which job (and skill, and tool) wrote a file; absent for files uploaded directly."""

    job_id: UUID
    skill_name: str | None = None
    tool: str | None = None
    """The agent tool or SDK surface that wrote it (``media``, ``download_url``), if known."""


class ObjectWrittenPayload(Payload):
    path: str
    """Workspace-relative, normalised (``uploads/abc.jpg``)."""
    bytes: int
    content_type: str
    written_at: datetime
    """When the bytes landed; orders writes and deletes of one path."""
    origin: ObjectOrigin | None = None
    source: Literal["upload", "job", "platform"] = "upload"


class DriveObjectWritten(Event):
    """A file of a workspace's drive was created or replaced."""

    stream: ClassVar = streams.PLATFORM
    subject_pattern: ClassVar = "drive.{workspace_id}.object_written"
    type: Literal["drive.object.written"] = "drive.object.written"
    payload: ObjectWrittenPayload


class ObjectsDeletedPayload(Payload):
    paths: tuple[str, ...]
    """At most :data:`MAX_PATHS_PER_EVENT`; a larger recursive delete emits several events."""
    deleted_at: datetime


MAX_PATHS_PER_EVENT = 256


class DriveObjectsDeleted(Event):
    """Files of a workspace's drive were deleted (one file, or a batch of a recursive delete)."""

    stream: ClassVar = streams.PLATFORM
    subject_pattern: ClassVar = "drive.{workspace_id}.object_deleted"
    type: Literal["drive.object.deleted"] = "drive.object.deleted"
    payload: ObjectsDeletedPayload
