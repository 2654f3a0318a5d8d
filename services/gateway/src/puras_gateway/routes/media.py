"""``/v1/media/*``: media generation for code running inside a job (``puras.media``).

``POST /v1/media/generate`` is ``media.run``: a registered slug and its inputs, passed through
unchanged. ``POST /v1/media/images``, ``/videos``, ``/speech`` and ``/transcriptions`` are the
model-portable helpers (``generate_image`` … ``transcribe``): the library picks the slug and
shapes the inputs, and the answer adds the ``warnings`` it had. Every call is billed to the
job's workspace (one ``usage.recorded``, and a ``usage`` event on the job), and its files land in
the workspace's drive with the job, its skill and the tool ``media`` as their origin.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from puras_common.api import ApiError, ErrorCode, ErrorDetail
from puras_common.bus import publish
from puras_common.drive import DriveClient, Origin
from puras_common.envelope import Event
from puras_media import CallContext, DriveStore, MediaError, MediaRequest, PortableError, portable
from pydantic import BaseModel, ConfigDict, Field

from puras_gateway.auth import GatewayDep
from puras_gateway.bodies import parse_model, read_capped
from puras_gateway.context import Gateway
from puras_gateway.jobcalls import JobCaller, JobCallerDep

router = APIRouter(prefix="/v1/media", tags=["media"])

_CODES = {400: ErrorCode.INVALID_REQUEST, 502: ErrorCode.UPSTREAM_ERROR, 503: ErrorCode.UNAVAILABLE, 504: ErrorCode.UPSTREAM_TIMEOUT}


class GenerateIn(BaseModel):
    """``media.run(model, inputs, output_path=…, output_url_path=…, kind=…)``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    inputs: dict[str, Any] = Field(default_factory=dict)
    output_path: str | None = None
    output_url_path: str | None = None
    kind: str = "auto"


class ImageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: Any = None
    model: Any = "auto"
    refs: Any = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    n: Any = None
    output_path: str | None = None


class VideoIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: Any = ""
    model: Any = "auto"
    image: Any = None
    last_frame: Any = None
    refs: Any = None
    lipsync_audio: Any = None
    duration: Any = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    audio: bool = False
    output_path: str | None = None


class SpeechIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Any = None
    model: Any = "auto"
    voice: str | None = None
    language: str | None = None
    stability: Any = None
    similarity_boost: Any = None
    style: Any = None
    speed: Any = None
    output_path: str | None = None


class TranscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    audio: Any = None
    keyterms: Any = None
    language_code: str | None = None
    model: Any = "elevenlabs/scribe-v2"


def api_error(exc: MediaError) -> ApiError:
    """A media error as the API answers it: the HTTP code by its status, the media code and the
    place in ``details``."""
    return ApiError(_CODES[exc.status], exc.message, details=exc.details())


async def run_media(gw: Gateway, job: JobCaller, request: MediaRequest) -> dict[str, Any]:
    """One call for ``job``: its files in the workspace's drive, its usage on the bus."""
    assert gw.media is not None
    drive = DriveClient(gw.settings.drive_url, token=gw.settings.internal_token.get_secret_value(), client=gw.http)
    store = DriveStore(drive, workspace_id=job.workspace_id, origin=Origin(job.job_id, job.skill_name, "media"))
    context = CallContext(workspace_id=job.workspace_id, job_id=job.job_id, key_id=job.key_id, attempt=job.attempt or None)

    async def emit(events: list[Event]) -> None:
        # Acknowledged before the answer, so the job's usage events precede its terminal event.
        await publish(gw.runtime.js, events)

    try:
        return await gw.media.run(request, context=context, store=store, emit=emit)
    except MediaError as exc:
        raise api_error(exc) from None


async def _body(request: Request, gw: Gateway) -> bytes:
    return await read_capped(request, gw.settings.max_request_bytes, hint="; pass files as URLs (sign drive paths with puras.drive.url)")


@router.post("/generate")
async def generate(request: Request, gw: GatewayDep, job: JobCallerDep) -> Any:
    body = parse_model(GenerateIn, await _body(request, gw))
    call = MediaRequest(body.model, body.inputs, output_path=body.output_path, output_url_path=body.output_url_path, kind=body.kind)
    return await run_media(gw, job, call)


async def _portable(request: Request, gw: Gateway, job: JobCaller, model: type[BaseModel], helper: Any) -> Any:
    args = parse_model(model, await _body(request, gw)).model_dump()
    assert gw.media is not None
    try:
        resolved = helper(**args, routes=gw.media.routes)
    except PortableError as exc:
        details = [ErrorDetail(pointer=exc.pointer, message=str(exc))] if exc.pointer else None
        raise ApiError(ErrorCode.INVALID_REQUEST, str(exc), details=details) from None
    result = await run_media(gw, job, resolved.request)
    return {**result, "warnings": list(resolved.warnings)}


@router.post("/images")
async def images(request: Request, gw: GatewayDep, job: JobCallerDep) -> Any:
    """``media.generate_image``."""
    return await _portable(request, gw, job, ImageIn, portable.generate_image)


@router.post("/videos")
async def videos(request: Request, gw: GatewayDep, job: JobCallerDep) -> Any:
    """``media.generate_video``."""
    return await _portable(request, gw, job, VideoIn, portable.generate_video)


@router.post("/speech")
async def speech(request: Request, gw: GatewayDep, job: JobCallerDep) -> Any:
    """``media.generate_audio``."""
    return await _portable(request, gw, job, SpeechIn, portable.generate_audio)


@router.post("/transcriptions")
async def transcriptions(request: Request, gw: GatewayDep, job: JobCallerDep) -> Any:
    """``media.transcribe``."""
    return await _portable(request, gw, job, TranscriptionIn, portable.transcribe)
