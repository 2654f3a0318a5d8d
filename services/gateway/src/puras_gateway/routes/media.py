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
from puras_media import MediaRequest, portable
from pydantic import BaseModel, ConfigDict, Field

from puras_gateway import media_calls
from puras_gateway.auth import GatewayDep
from puras_gateway.bodies import parse_model, read_capped
from puras_gateway.context import Gateway
from puras_gateway.jobcalls import JobCaller, JobCallerDep

router = APIRouter(prefix="/v1/media", tags=["media"])


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


async def _body(request: Request, gw: Gateway) -> bytes:
    return await read_capped(
        request,
        gw.settings.max_request_bytes,
        hint="; pass files as URLs (sign drive paths with puras.drive.url)",
    )


@router.post("/generate")
async def generate(request: Request, gw: GatewayDep, job: JobCallerDep) -> Any:
    body = parse_model(GenerateIn, await _body(request, gw))
    call = MediaRequest(
        body.model,
        body.inputs,
        output_path=body.output_path,
        output_url_path=body.output_url_path,
        kind=body.kind,
    )
    return await media_calls.run(gw, job, call)


async def _portable(
    request: Request, gw: Gateway, job: JobCaller, model: type[BaseModel], helper: Any
) -> Any:
    args = parse_model(model, await _body(request, gw)).model_dump()
    return await media_calls.run_portable(gw, job, helper, args)


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
