"""Media calls for a running job (``puras.media``): the library runs the call, the files land
in the workspace's drive with the job, its skill and the tool ``media`` as their origin, and the
usage events are acknowledged on the bus before the answer, so they precede the job's end."""

from __future__ import annotations

from typing import Any

from puras_common.api import ApiError, ErrorCode, ErrorDetail
from puras_common.bus import publish
from puras_common.drive import DriveClient, Origin
from puras_common.envelope import Event
from puras_media import CallContext, DriveStore, MediaError, MediaRequest, PortableError

from puras_gateway import keys
from puras_gateway.context import Gateway
from puras_gateway.jobcalls import JobCaller

_CODES = {
    400: ErrorCode.INVALID_REQUEST,
    402: ErrorCode.INSUFFICIENT_CREDITS,
    429: ErrorCode.SPEND_CAP_REACHED,
    502: ErrorCode.UPSTREAM_ERROR,
    503: ErrorCode.UNAVAILABLE,
    504: ErrorCode.UPSTREAM_TIMEOUT,
}


def api_error(exc: MediaError) -> ApiError:
    """A media error as the API answers it: the HTTP code by its status, the media code and the
    place in ``details``."""
    return ApiError(_CODES[exc.status], exc.message, details=exc.details())


async def run(gw: Gateway, job: JobCaller, request: MediaRequest) -> dict[str, Any]:
    """One call for ``job``: its files in the workspace's drive, its usage on the bus."""
    assert gw.media is not None
    drive = DriveClient(
        gw.settings.drive_url, token=gw.settings.internal_token.get_secret_value(), client=gw.http
    )
    store = DriveStore(
        drive, workspace_id=job.workspace_id, origin=Origin(job.job_id, job.skill_name, "media")
    )
    context = CallContext(
        workspace_id=job.workspace_id,
        job_id=job.job_id,
        key_id=job.key_id,
        attempt=job.attempt or None,
        daily_cap_micros=await keys.daily_cap(gw.db, job.key_id) if job.key_id else None,
    )

    async def emit(events: list[Event]) -> None:
        # Acknowledged before the answer, so the job's usage events precede its terminal event.
        await publish(gw.runtime.js, events)

    try:
        return await gw.media.run(request, context=context, store=store, emit=emit)
    except MediaError as exc:
        raise api_error(exc) from None


async def run_portable(
    gw: Gateway, job: JobCaller, helper: Any, args: dict[str, Any]
) -> dict[str, Any]:
    """A model-portable helper (``generate_image`` …): the library picks the slug and shapes the
    inputs; the answer adds the ``warnings`` it had."""
    assert gw.media is not None
    try:
        resolved = helper(**args, routes=gw.media.routes)
    except PortableError as exc:
        details = [ErrorDetail(pointer=exc.pointer, message=str(exc))] if exc.pointer else None
        raise ApiError(ErrorCode.INVALID_REQUEST, str(exc), details=details) from None
    result = await run(gw, job, resolved.request)
    return {**result, "warnings": list(resolved.warnings)}
