"""A job's ``outputs``: every ``{"drive_path": …}`` in its result, each with a fresh signed link
(minted by the drive, which holds the signing key)."""

from __future__ import annotations

from typing import Any

from puras_common.api import JobOut, OutputFile
from puras_common.drive import DriveClient, DriveError, drive_paths_in
from puras_common.logging import get_logger

from puras_gateway.context import Gateway

log = get_logger("puras_gateway.outputs")

MAX_OUTPUTS = 200


async def with_outputs(gw: Gateway, job: JobOut, workspace_id: Any) -> JobOut:
    """``job`` with its outputs listed; links are ``None`` if the drive cannot be reached, so
    reading a job never fails on account of its files."""
    paths = drive_paths_in(job.result, limit=MAX_OUTPUTS)
    if not paths:
        return job
    links: dict[str, str | None] = {}
    drive = DriveClient(gw.settings.drive_url, token=gw.settings.internal_token.get_secret_value(), client=gw.http)
    try:
        links = await drive.sign_many(workspace_id, paths)
    except DriveError as exc:
        log.warning("could not sign job outputs", job_id=str(job.id), error=str(exc))
    return job.model_copy(update={"outputs": [OutputFile(drive_path=p, signed_url=links.get(p)) for p in paths]})
