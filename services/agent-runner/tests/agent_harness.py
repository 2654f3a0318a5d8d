"""An agent runner in the test process (the harness the fixtures in conftest.py build): the real runner, loop, tools, sandbox and SDKs, on the
session's NATS, against the wire-format model, search and web stubs.

Only the bundle's way in differs from production: a project is read from a local folder with
the deployments service's own bundle reader instead of being fetched over HTTP. The
cross-service tests in ``tests/e2e`` cover the fetched path.
"""

from __future__ import annotations

import os
import textwrap
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from puras_agent_runner.runner import AgentRunner
from puras_agent_runner.settings import AgentRunnerSettings
from puras_common.envelope import Event
from puras_common.events import JobKind, RunAgent, RunPayload, parse_event
from puras_deployments.bundle import read_bundle
from puras_jobhost.prepare import Deployments, Prepared
from puras_sandbox import bwrap_available, python_for
from puras_testing.drive import RunningDrive
from puras_testing.media.elevenlabs import ElevenLabsStub
from puras_testing.media.fal import FalStub
from puras_testing.models import ModelStub
from puras_testing.web import WebStub

ROOT = os.geteuid() == 0
UID = 65534 if ROOT else None
SANDBOXED = bwrap_available(UID, UID)
"""bash and tools run in bubblewrap wherever it works, as on the platform."""


class LocalDeployments(Deployments):
    """Deployments prepared from folders on this host (bundles read by the deployments
    service's own reader), with the function runner's warm fork servers."""

    def __init__(self, cache_dir: Path) -> None:
        http = httpx.AsyncClient()
        super().__init__(
            cache_dir=cache_dir,
            deployments_url="http://unused",
            token="unused",
            http=http,
            uid=UID,
            gid=UID,
            max_warm=8,
            python=python_for(UID, UID),
            sandboxed=SANDBOXED,
        )
        self.projects: dict[uuid.UUID, Path] = {}

    def add(self, files: Mapping[str, str]) -> uuid.UUID:
        deployment_id = uuid.uuid4()
        root = self.cache_dir / "deployments" / str(deployment_id) / "project"
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(content).lstrip("\n"))
        report = read_bundle(root)
        assert not report.problems, [str(p) for p in report.problems]
        for dirpath, _dirs, filenames in os.walk(root.parent):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o644)
        self.projects[deployment_id] = root
        self._prepared[deployment_id] = Prepared(
            deployment_id,
            root,
            {s.name: s.model_dump(mode="json") for s in report.skills},
            self.python,
            [],
        )
        return deployment_id


@dataclass
class Outcome:
    terminal: Event
    events: list[Event]
    usage: list[Event]

    @property
    def status(self) -> str:
        return self.terminal.type.removeprefix("job.")

    @property
    def result(self) -> Any:
        return self.terminal.payload.result  # type: ignore[attr-defined]

    @property
    def error(self) -> str:
        return self.terminal.payload.error  # type: ignore[attr-defined]

    @property
    def compute(self) -> Any:
        """The attempt's own compute, as its terminal event carries it (None if published)."""
        return getattr(self.terminal.payload, "compute", None)

    def of(self, event_type: str) -> list[Any]:
        return [e.payload for e in self.events if e.type == event_type]


@dataclass
class Harness:
    runner: AgentRunner
    deployments: LocalDeployments
    models: ModelStub
    web: WebStub
    nc: NATS
    settings: AgentRunnerSettings
    drive_root: Path
    drive: RunningDrive | None = None
    fal: FalStub | None = None
    eleven: ElevenLabsStub | None = None
    workspace_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def push(self, files: Mapping[str, str]) -> uuid.UUID:
        return self.deployments.add(files)

    def folder(self, workspace_id: uuid.UUID | None = None) -> Path:
        """The workspace's folder of the drive's local backend (the drive gives it, and what
        is in it, to the workspace's uid when a job first mounts it)."""
        path = self.drive_root / str(workspace_id or self.workspace_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def origin(self, path: str, workspace_id: uuid.UUID | None = None) -> dict[str, Any]:
        """Who wrote a drive file, as the drive recorded it."""
        assert self.drive is not None
        async with httpx.AsyncClient() as http:
            answer = await http.get(
                f"{self.drive.url}/internal/drive/{workspace_id or self.workspace_id}/origin",
                params={"path": path},
                headers={"Authorization": f"Bearer {self.drive.token}"},
            )
        return answer.json()

    def command(
        self,
        deployment_id: uuid.UUID,
        skill: str,
        inputs: dict[str, Any],
        *,
        timeout: int = 60,
        entrypoint: str = "SKILL.md",
        **spec: Any,
    ) -> RunAgent:
        payload = RunPayload(
            skill_name=skill,
            skillpack_id=uuid.uuid4(),
            skillpack_slug="default",
            owner_workspace_id=self.workspace_id,
            deployment_id=deployment_id,
            version=1,
            kind=JobKind.AGENT,
            entrypoint=entrypoint,
            timeout_seconds=timeout,
            inputs=inputs,
            attempt=1,
            **spec,
        )
        return RunAgent.new(
            payload, producer="test", workspace_id=self.workspace_id, job_id=uuid.uuid4()
        )

    async def run(
        self, deployment_id: uuid.UUID, skill: str, inputs: dict[str, Any], **kw: Any
    ) -> Outcome:
        command = self.command(deployment_id, skill, inputs, **kw)
        return await self.run_command(command)

    async def run_command(self, command: RunAgent) -> Outcome:
        terminal = await self.runner.attempt(command)
        # Read back from the streams: whatever the runner published before returning is stored
        # there (it waited for the acks), in publish order, however loaded the machine is.
        js = self.nc.jetstream()
        events = await _stored(js, f"job.{command.job_id}.>")
        usage = await _stored(js, f"usage.{command.workspace_id}.recorded")
        return Outcome(terminal, events, [u for u in usage if u.job_id == command.job_id])


async def _stored(js: JetStreamContext, subject: str) -> list[Event]:
    """Every message a stream holds on ``subject``, oldest first."""
    sub = await js.pull_subscribe(subject)
    found: list[Event] = []
    try:
        while True:
            try:
                batch = await sub.fetch(256, timeout=0.5)
            except nats.errors.TimeoutError:
                return found
            found.extend(parse_event(m.data) for m in batch)
            if (await sub.consumer_info()).num_pending == 0:
                return found
    finally:
        await sub.unsubscribe()
