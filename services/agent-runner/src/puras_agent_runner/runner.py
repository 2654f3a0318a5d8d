"""Running one attempt of an agentic skill's job.

started → prepare the deployment (cached; the job host's, as for function jobs) →
resolve the model, the system prompt (the skill's .md entrypoint), the inputs and attachments →
the job's workdir with ``drive/`` → agent.started → the loop → succeeded | failed | cancelled.
The WORK message is acked only after the terminal event is acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from nats.js import JetStreamContext
from puras_common import tokens
from puras_common.attempts import AttemptClient, CancelWatch
from puras_common.budgets import BudgetClient
from puras_common.bus import Delivery, Lease, send
from puras_common.drive import DriveClient
from puras_common.envelope import Event
from puras_common.events import (
    JobCancelled,
    JobFailed,
    JobStarted,
    JobSucceeded,
    RunAgent,
    RunPayload,
)
from puras_common.events.jobs import (
    CancelledPayload,
    FailedPayload,
    InputRequestedPayload,
    JobInputRequested,
    StartedPayload,
    SucceededPayload,
)
from puras_common.ids import new_id
from puras_common.logging import bound_contextvars, get_logger
from puras_common.payloads import PayloadStore, payload_key
from puras_common.secret_delivery import SecretDeliveryError, SecretMask
from puras_common.tokens import mint_job_token
from puras_jobhost.prepare import Deployments, JobServer, Prepared, PrepareError
from puras_jobhost.workdrive import DriveSyncError, WorkDrives
from puras_media import MediaService
from puras_pricing import carry, compute_events, report_outcome, settings_pricebook
from puras_pricing.models import Model
from puras_sandbox import Limits

from puras_agent_runner.attachments import AttachmentError, resolve_attachments
from puras_agent_runner.budget import CallBudget
from puras_agent_runner.conversation import Content, Message, Text
from puras_agent_runner.drive import AgentDrive
from puras_agent_runner.fetching import Fetcher
from puras_agent_runner.journal import PRODUCER, Journal
from puras_agent_runner.loop import AgentCancelled, AgentFailure, AgentLoop, InputNeeded
from puras_agent_runner.providers import Providers, UnknownModel
from puras_agent_runner.sandbox import JobSandbox
from puras_agent_runner.search import SearchProvider
from puras_agent_runner.secrets import SecretSource
from puras_agent_runner.settings import AgentRunnerSettings
from puras_agent_runner.tools import ToolContext, toolset
from puras_agent_runner.tools.bash import BashTool
from puras_agent_runner.tools.user import UserTool

log = get_logger("puras_agent_runner")


@dataclass
class _Compute:
    """What an attempt's sandbox used, for its compute usage."""

    cpu_ms: int = 0


class AgentWaiting(Exception):
    """The attempt ended on a question; the conversation and the drive are saved."""

    def __init__(self, question: InputRequestedPayload) -> None:
        super().__init__(question.prompt)
        self.question = question


def conversation_key(command: RunAgent, number: int) -> str:
    """Where the conversation is kept while the job waits for the answer to question
    ``number`` (only the platform's services reach payload objects)."""
    return payload_key(command.workspace_id, command.job_id, f"conversation_{number}")


def first_message(inputs: dict[str, Any], attachments: list[Content]) -> Message:
    """The first user turn: the ``prompt`` as text, the other inputs as JSON, then the attachments."""
    prompt = inputs.get("prompt")
    rest = {k: v for k, v in inputs.items() if k not in ("prompt", "attachments")}
    parts: list[str] = []
    if isinstance(prompt, str) and prompt:
        parts.append(prompt)
    elif prompt is not None:
        rest["prompt"] = prompt
    if rest:
        parts.append("Inputs:\n" + json.dumps(rest, ensure_ascii=False, indent=2))
    text = "\n\n".join(parts) or "(no inputs)"
    return Message("user", [Text(text), *attachments])


class AgentRunner:
    def __init__(
        self,
        *,
        settings: AgentRunnerSettings,
        js: JetStreamContext,
        deployments: Deployments,
        payloads: PayloadStore,
        providers: Providers,
        fetcher: Fetcher,
        search: SearchProvider | None,
        secrets: SecretSource,
        cancellations: CancelWatch,
        drive: DriveClient,
        media: MediaService | None = None,
        attempts: AttemptClient | None = None,
        budgets: BudgetClient | None = None,
    ) -> None:
        self.settings = settings
        self.js = js
        self.deployments = deployments
        self.payloads = payloads
        self.providers = providers
        self.fetcher = fetcher
        self.search = search
        self.secrets = secrets
        self.cancellations = cancellations
        self.drive = drive
        self.media = media
        self.attempts = attempts
        self.budgets = budgets
        """Holds each model call's cost first; None only where nothing is billed (tests)."""
        self.work_root = deployments.cache_dir / "work"
        self.drop_privileges = os.geteuid() == 0
        self.owner = (settings.sandbox_uid, settings.sandbox_gid) if self.drop_privileges else None
        self.drives = WorkDrives(
            drive,
            owner=self.owner,
            ssrf_allow=settings.ssrf_allow,
            work_root=self.work_root,
            scratch_memory_bytes=settings.scratch_memory_bytes(),
        )
        self.completed = 0
        self.prices = settings_pricebook(settings)

    async def work(self, delivery: Delivery, lease: Lease) -> None:
        command = delivery.event
        assert isinstance(command, RunAgent)
        if self.attempts is None:
            raise RuntimeError("an agent runner that takes work needs an AttemptClient")
        attempts = self.attempts
        with bound_contextvars(job_id=str(command.job_id), workspace_id=str(command.workspace_id)):
            # The scheduler fences attempts: a redelivered agent job ends as "worker lost"
            # there, since an agent never runs twice.
            claim = await attempts.claim(
                command.job_id,
                dispatched_attempt=command.payload.attempt,
                delivery=delivery.num_delivered,
            )
            if not claim.run:
                log.info("not running the job", reason=claim.reason)
                await lease.ack()
                return
            if claim.attempt != command.payload.attempt:
                command = command.model_copy(
                    update={
                        "payload": command.payload.model_copy(update={"attempt": claim.attempt})
                    }
                )
            terminal = await self.attempt(command)
            await report_outcome(
                attempts,
                self.js,
                command,
                attempt=claim.attempt,
                event_type=terminal.type,
                outcome=terminal.payload,
                producer=PRODUCER,
            )
            await lease.ack()
            self.completed += 1

    async def attempt(self, command: RunAgent, *, started_at: float | None = None) -> Event:
        """Run one attempt, publishing its events; returns its terminal event, which the
        scheduler publishes once it accepts the attempt's outcome. The attempt's compute (the
        CPU time of its sandbox's processes, its wall time) goes with it: carried by the terminal
        event when it costs nothing, published as usage first otherwise."""
        started_at = time.monotonic() if started_at is None else started_at
        used = _Compute()
        terminal = await self._attempt(command, started_at, used)
        compute = compute_events(
            self.prices,
            command,
            key_id=command.payload.key_id,
            attempt=command.payload.attempt,
            cpu_ms=used.cpu_ms,
            wall_ms=int((time.monotonic() - started_at) * 1000),
            producer=PRODUCER,
        )
        outcome = await carry(self.js, compute, terminal.payload)
        return terminal.model_copy(update={"payload": outcome})

    async def _attempt(self, command: RunAgent, started_at: float, used: _Compute) -> Event:
        p = command.payload
        # Sent now and stored while the job is made ready: the journal confirms it before the
        # job's next event, and the attempt before its end, whatever ended it.
        started = await send(
            self.js,
            [
                self._event(
                    command,
                    JobStarted,
                    StartedPayload(attempt=p.attempt, runner=self.settings.instance_id),
                )
            ],
        )
        try:
            return await self._attempt_started(command, started_at, used, started)
        finally:
            await started()

    async def _attempt_started(
        self,
        command: RunAgent,
        started_at: float,
        used: _Compute,
        started: Callable[[], Awaitable[None]],
    ) -> Event:
        p = command.payload
        masker = SecretMask(())
        with self.cancellations.watch(command.job_id) as cancelled:
            try:
                token = self._token(command, p)
                try:
                    secrets = await self.secrets.for_job(
                        command, self._token(command, p, audiences=(tokens.SECRETS,))
                    )
                except SecretDeliveryError as exc:
                    raise AgentFailure(
                        f"could not get the skillpack's secrets: {exc}", reason="runtime"
                    ) from None
                masker = SecretMask(secrets.values())
                result = await self._run(
                    command, p, cancelled, started_at, token, secrets, masker, used, started
                )
            except AgentFailure as failure:
                return self._failed(command, failure, started_at, masker)
            except AgentWaiting as waiting:
                return self._event(command, JobInputRequested, waiting.question)
            except AgentCancelled as stop:
                payload = CancelledPayload(
                    attempt=p.attempt, reason=f"cancelled by request after {stop.steps} steps"
                )
                return self._event(command, JobCancelled, payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("runner failed the agent job")
                crash = AgentFailure(
                    f"the runner failed to run the job: {type(exc).__name__}: {exc}",
                    reason="runtime",
                )
                return self._failed(command, crash, started_at, masker)
        value, ref = result, None
        if len(orjson.dumps(result)) > self.settings.inline_payload_bytes:
            key = payload_key(command.workspace_id, command.job_id, "result")
            value, ref = None, await self.payloads.put(key, result)
        duration = int((time.monotonic() - started_at) * 1000)
        return self._event(
            command,
            JobSucceeded,
            SucceededPayload(attempt=p.attempt, result=value, result_ref=ref, duration_ms=duration),
        )

    async def _run(
        self,
        command: RunAgent,
        p: RunPayload,
        cancelled: asyncio.Event,
        started_at: float,
        token: str,
        secrets: dict[str, str],
        masker: SecretMask,
        used: _Compute,
        started: Callable[[], Awaitable[None]],
    ) -> Any:
        try:
            prepared = await self.deployments.prepare(p.deployment_id)
        except PrepareError as exc:
            raise AgentFailure(str(exc), reason="runtime") from None
        manifest = prepared.skills.get(p.skill_name)
        if manifest is None:
            raise AgentFailure(
                f"skill {p.skill_name!r} is not in deployment {p.deployment_id}", reason="runtime"
            )
        skill_dir = prepared.root / "skills" / p.skill_name
        system, model_slug = self._instructions(p, manifest, prepared, skill_dir)
        try:
            resolved = self.providers.resolve(model_slug)
        except UnknownModel as exc:
            raise AgentFailure(f"skill {p.skill_name!r}: {exc}", reason="runtime") from None
        inputs = p.inputs if p.inputs is not None else await self.payloads.get(p.inputs_ref or "")
        workdir = self.work_root / str(command.job_id)
        workdir.mkdir(mode=0o700)
        job_drive = None
        sandbox: JobSandbox | None = None
        journal: Journal | None = None
        try:
            owner = await self.drives.owner_for(command.workspace_id)
            if owner is not None:
                os.chown(workdir, *owner)
            job_drive = await self.drives.attach(
                workdir,
                workspace_id=command.workspace_id,
                job_id=command.job_id,
                skill_name=p.skill_name,
                inputs=inputs,
            )
            drive = AgentDrive(
                job_drive, client=self.drive, workspace_id=command.workspace_id, owner=owner
            )
            network = manifest.get("network", True)
            env = {
                **self._env(command, p, workdir, prepared, token, secrets),
                **job_drive.env,
                **self.deployments.job_env(network=network),
            }
            drive_binds = (str(job_drive.host_dir),) if job_drive.host_dir is not None else ()
            limits = self._limits(p)
            answers = p.resume.answers if p.resume else []
            tools = toolset(
                manifest,
                model=resolved.model.slug,
                free_output=p.subagent is not None,
                answered=len(answers),
            )

            def start_sandbox() -> Awaitable[JobServer]:
                return self.deployments.job_server(
                    prepared,
                    workspace_id=command.workspace_id,
                    job_id=command.job_id,
                    workdir=workdir,
                    network=network,
                    rw_binds=drive_binds,
                    owner=owner,
                    limits=limits,
                    python_calls=any(isinstance(tool, UserTool) for tool in tools.values()),
                )

            sandbox = JobSandbox(start=start_sandbox, workdir=str(workdir), env=env, limits=limits)
            deadline = started_at + p.timeout_seconds
            journal = Journal(self.js, command, masker, prices=self.prices, after=started)

            async def emit(events: list[Any]) -> None:
                await journal.emit(*events)

            ctx = ToolContext(
                job_id=str(command.job_id),
                workspace_id=str(command.workspace_id),
                workdir=workdir,
                deployment_root=prepared.root,
                skill_dir=skill_dir,
                env=env,
                sandbox=sandbox,
                drive=drive,
                fetcher=self.fetcher,
                search=self.search,
                vision=resolved.model.vision,
                pdf=resolved.model.pdf,
                seconds_left=lambda: deadline - time.monotonic(),
                media=self.media,
                emit=emit,
                key_id=p.key_id,
                attempt=p.attempt,
                daily_cap_micros=p.daily_cap_micros,
                cancelled=cancelled,
            )
            try:
                attachments = await resolve_attachments(
                    inputs.get("attachments"),
                    model=resolved.model,
                    drive=drive,
                    fetcher=self.fetcher,
                    signed_urls=self.settings.public_url is not None,
                )
            except AttachmentError as exc:
                raise AgentFailure(str(exc), reason="invalid_inputs") from None
            if any(isinstance(tool, BashTool | UserTool) for tool in tools.values()):
                sandbox.prestart()  # while the model thinks about the first step
            saved = (
                await self.payloads.get(conversation_key(command, len(answers)))
                if answers
                else None
            )
            if saved is None:
                await journal.agent_started(resolved.model, list(tools), self.settings.max_steps)
            loop = AgentLoop(
                chat=resolved.chat,
                model=resolved.model,
                system=system,
                first_message=first_message(inputs, attachments),
                tools=tools,
                context=ctx,
                journal=journal,
                retry=self.providers.retry_policy(),
                cancelled=cancelled,
                deadline=deadline,
                timeout_seconds=p.timeout_seconds,
                max_steps=self.settings.max_steps,
                max_tokens=self.settings.max_output_tokens,
                budget=self._budget(command, resolved.model, deadline),
            )
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())) as window:
                    result = await loop.run(resume=saved, answer=answers[-1] if answers else None)
            except TimeoutError:
                if window.expired():
                    raise loop.timed_out() from None
                raise
            except InputNeeded as needed:
                await sandbox.close()  # what it left running stops before the drive is saved
                await self._wait(command, loop, needed, job_drive, answered=len(answers))
            await sandbox.close()  # what it left running stops before the drive's last sync
            try:
                await job_drive.save()
            except DriveSyncError as exc:
                raise AgentFailure(str(exc), reason="runtime") from None
            return result
        finally:
            if sandbox is not None:
                await sandbox.close()
                used.cpu_ms += sandbox.cpu_ms
            if job_drive is not None:
                await job_drive.release()
            shutil.rmtree(workdir, ignore_errors=True)
            if journal is not None:
                await journal.settle()  # every event of the attempt precedes its end

    async def _wait(
        self,
        command: RunAgent,
        loop: AgentLoop,
        needed: InputNeeded,
        job_drive: Any,
        *,
        answered: int,
    ) -> None:
        """Keep what the job needs to run on once answered (its drive files, its
        conversation), then end the attempt on the question."""
        try:
            await job_drive.save()
        except DriveSyncError as exc:
            raise AgentFailure(str(exc), reason="runtime") from None
        number = answered + 1
        await self.payloads.put(conversation_key(command, number), loop.saved(needed))
        raise AgentWaiting(
            InputRequestedPayload(
                attempt=command.payload.attempt,
                request_id=new_id(),
                number=number,
                prompt=needed.prompt,
                answer_schema=needed.schema,
                timeout_seconds=needed.timeout_seconds,
            )
        )

    def _instructions(
        self, p: RunPayload, manifest: dict[str, Any], prepared: Prepared, skill_dir: Path
    ) -> tuple[str, str | None]:
        """The system prompt and the model: the skill's own, or a subagent's (a markdown file of
        the bundle, or an inline prompt, on the caller skill's model)."""
        sub = p.subagent
        if sub is None:
            return (skill_dir / p.entrypoint).read_text(
                encoding="utf-8", errors="replace"
            ), manifest.get("model")
        if sub.kind == "prompt":
            return sub.prompt or "", sub.model
        root = prepared.root.resolve()
        path = (root / (sub.path or "")).resolve()
        if not path.is_relative_to(root) or path.suffix != ".md" or not path.is_file():
            shown = (sub.path or "").removeprefix(f"skills/{p.skill_name}/")
            raise AgentFailure(
                f"subagent file {shown!r} is not in deployment {p.deployment_id} (paths are relative to the skill's folder)",
                reason="invalid_inputs",
            )
        return path.read_text(encoding="utf-8", errors="replace"), sub.model

    def _budget(self, command: RunAgent, model: Model, deadline: float) -> CallBudget | None:
        if self.budgets is None:
            return None
        p = command.payload
        return CallBudget(
            client=self.budgets,
            prices=self.prices,
            model=model,
            workspace_id=command.workspace_id,
            job_id=command.job_id,
            key_id=p.key_id,
            daily_cap_micros=p.daily_cap_micros,
            seconds_left=lambda: deadline - time.monotonic(),
            min_output_tokens=self.settings.hold_min_output_tokens,
        )

    def _limits(self, p: RunPayload) -> Limits:
        s = self.settings
        return Limits(
            cpu_seconds=p.timeout_seconds + 5,
            address_space_bytes=s.memory_limit_bytes,
            open_files=s.max_open_files,
            processes=s.max_processes,
            file_size_bytes=s.max_file_bytes,
        )

    def _env(
        self,
        command: RunAgent,
        p: RunPayload,
        workdir: Path,
        prepared: Prepared,
        token: str,
        secrets: dict[str, str],
    ) -> dict[str, str]:
        # The job's interpreter first, so `python3` in bash is the deployment's, and the `puras`
        # package (only it) on PYTHONPATH, so bash can `import puras` (subagents, media, drive).
        bin_dirs = [str(Path(prepared.python).parent)]
        return {
            **secrets,
            "PATH": ":".join([*bin_dirs, "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": ":".join(
                [str(prepared.root), str(workdir), str(self.deployments.runtime_dir)]
            ),
            "PURAS_API_BASE": self.settings.api_base,
            "PURAS_JOB_TOKEN": token,
            "PURAS_JOB_ID": str(command.job_id),
            "PURAS_WORKSPACE_ID": str(command.workspace_id),
            "PURAS_SKILL": p.skill_name,
            "PURAS_DEPLOYMENT_ROOT": str(prepared.root),
        }

    def _token(
        self,
        command: RunAgent,
        p: RunPayload,
        *,
        audiences: tuple[str, ...] = tokens.JOB_AUDIENCES,
    ) -> str:
        """The job's credential for the in-skill SDK (drive, media, subagents), or the one this
        runner asks for the job's secrets with (which the job never sees)."""
        return mint_job_token(
            self.settings.job_token_key.get_secret_value(),
            workspace_id=command.workspace_id,
            job_id=command.job_id,
            skillpack_id=p.skillpack_id,
            attempt=p.attempt,  # an agentic job never runs a second attempt
            audiences=audiences,
            ttl_seconds=p.timeout_seconds + 300,
        )

    def _failed(
        self, command: RunAgent, failure: AgentFailure, started_at: float, masker: SecretMask
    ) -> Event:
        payload = FailedPayload(
            attempt=command.payload.attempt,
            error=masker.text(failure.error),
            error_detail=masker.value(failure.detail),
            reason=failure.reason,
            duration_ms=int((time.monotonic() - started_at) * 1000),
        )
        return self._event(command, JobFailed, payload)

    def _event(self, command: RunAgent, cls: type[Event], payload: Any) -> Event:
        return cls.new(
            payload,
            producer=PRODUCER,
            workspace_id=command.workspace_id,
            job_id=command.job_id,
            caused_by=command,
        )
