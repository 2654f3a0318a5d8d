"""The media library against the wire-format stubs of fal and ElevenLabs, saving into a real
drive service (its own process on the session's NATS and PostgreSQL)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest_asyncio
from puras_common.drive import DriveClient, Origin
from puras_common.envelope import Event
from puras_media import CallContext, DriveStore, MediaRequest, MediaService, MediaSettings
from puras_testing import Infra
from puras_testing.drive import RunningDrive, run_drive
from puras_testing.media.elevenlabs import ElevenLabsStub, elevenlabs_stub
from puras_testing.media.fal import FalStub, fal_stub

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def fal() -> AsyncIterator[FalStub]:
    async with fal_stub() as stub:
        yield stub


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def eleven() -> AsyncIterator[ElevenLabsStub]:
    async with elevenlabs_stub() as stub:
        yield stub


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def drive(infra: Infra) -> AsyncIterator[RunningDrive]:
    data = tempfile.mkdtemp(prefix="puras-media-drive-")
    os.chmod(data, 0o711)
    try:
        async with run_drive(infra.service_env("drive"), data_dir=data) as running:
            yield running
    finally:
        shutil.rmtree(data, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def media_settings(fal: FalStub, eleven: ElevenLabsStub, **overrides: Any) -> MediaSettings:
    env = {k.removeprefix("PURAS_").lower(): v for k, v in {**fal.env(), **eleven.env()}.items()}
    return MediaSettings(
        media_poll_seconds=0.01, media_poll_max_seconds=0.05, **{**env, **overrides}
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def media(fal: FalStub, eleven: ElevenLabsStub, http: httpx.AsyncClient) -> MediaService:
    return MediaService.from_settings(media_settings(fal, eleven), http, producer="media-test")


@dataclass
class Caller:
    """One job's calls: its drive, its context, and the usage events it published."""

    media: MediaService
    client: DriveClient
    workspace_id: uuid.UUID = field(default_factory=uuid.uuid4)
    job_id: uuid.UUID = field(default_factory=uuid.uuid4)
    events: list[Event] = field(default_factory=list)

    async def emit(self, events: list[Event]) -> None:
        self.events.extend(events)

    async def run(
        self,
        model: str,
        inputs: dict[str, Any] | None = None,
        *,
        service: MediaService | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        store = DriveStore(
            self.client,
            workspace_id=self.workspace_id,
            origin=Origin(self.job_id, "renderer", "media"),
        )
        context = CallContext(workspace_id=self.workspace_id, job_id=self.job_id, attempt=1)
        request = MediaRequest(model, inputs if inputs is not None else {}, **kw)
        return await (service or self.media).run(
            request, context=context, store=store, emit=self.emit
        )

    @property
    def usage(self) -> list[Event]:
        return [e for e in self.events if e.type == "usage.recorded"]


@pytest_asyncio.fixture(loop_scope="session")
async def caller(media: MediaService, drive: RunningDrive, http: httpx.AsyncClient) -> Caller:
    return Caller(media, DriveClient(drive.url, token=drive.token, client=http))
