"""A job's ``outputs``: every ``{"drive_path": …}`` in its result, each with a fresh signed link
(minted by the drive, which holds the signing key).

A link is minted only for a file its reader could open anyway. A secret key, a person or a
job token may sign any file of the workspace, so every output gets its link. A publishable key
may not read the drive: it gets links only to files the job itself (or one of its subagents)
wrote and to its own uploads (``uploads/pub-<key id>/``), so a skill that echoes a ``drive_path`` from its inputs
cannot hand an app a link to any file it names. The publishable-key fence marks the request
(:func:`read_by_publishable_key`); every path that shows a job (read, wait, stream) passes here.
"""

from __future__ import annotations

import contextvars
from typing import Any
from uuid import UUID

from puras_common.api import JobOut, OutputFile
from puras_common.drive import DriveClient, DriveError, drive_paths_in
from puras_common.logging import get_logger

from puras_gateway import jobs
from puras_gateway.context import Gateway
from puras_gateway.keys import publishable_folder

log = get_logger("puras_gateway.outputs")

MAX_OUTPUTS = 200

_PUBLISHABLE_READER: contextvars.ContextVar[UUID | None] = contextvars.ContextVar(
    "puras_publishable_reader", default=None
)


def read_by_publishable_key(key_id: UUID) -> None:
    """This request reads jobs with publishable key ``key_id``: its outputs' links are bounded."""
    _PUBLISHABLE_READER.set(key_id)


async def with_outputs(gw: Gateway, job: JobOut, workspace_id: Any) -> JobOut:
    """``job`` with its outputs listed; links are ``None`` if the drive cannot be reached, so
    reading a job never fails on account of its files."""
    paths = drive_paths_in(job.result, limit=MAX_OUTPUTS)
    if not paths:
        return job
    links: dict[str, str | None] = {}
    drive = DriveClient(
        gw.settings.drive_url, token=gw.settings.internal_token.get_secret_value(), client=gw.http
    )
    reader = _PUBLISHABLE_READER.get()
    bounds: dict[str, Any] = {}
    if reader is not None:
        tree = await jobs.tree_of(gw.db, job.id, workspace_id)
        bounds = {"written_by": tree or [job.id], "readable": publishable_folder(reader)}
    try:
        links = await drive.sign_many(workspace_id, paths, **bounds)
    except DriveError as exc:
        log.warning("could not sign job outputs", job_id=str(job.id), error=str(exc))
    return job.model_copy(
        update={"outputs": [OutputFile(drive_path=p, signed_url=links.get(p)) for p in paths]}
    )
