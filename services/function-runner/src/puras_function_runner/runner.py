"""Running one attempt of a deterministic skill's job.

started → prepare the deployment (cached) → fork the job from the deployment's warm parent with
its own workdir, env and rlimits → stream its output as ``log`` events → wait, within the
wall-clock timeout → validate the result → succeeded | failed. The WORK message is acked only
after the terminal event is acknowledged, so a runner that dies mid-way leaves the message to be
redelivered.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import orjson
from nats.js import JetStreamContext
from puras_common.bus import Delivery, Lease, publish
from puras_common.envelope import Event
from puras_common.errors import TRANSIENT_ERRORS
from puras_common.events import JobFailed, JobStarted, JobSucceeded, RunFunction, RunPayload
from puras_common.events.jobs import FailedPayload, StartedPayload, SucceededPayload
from puras_common.logging import bound_contextvars, get_logger
from puras_common.payloads import PayloadStore, payload_key
from puras_common.schemas import validate
from puras_common.tokens import mint_job_token
from puras_sandbox import ForkServerDied, Limits, Outcome, PythonCall, SandboxError

from puras_function_runner.logs import LogPump
from puras_function_runner.prepare import Deployments, Prepared, PrepareError
from puras_function_runner.settings import FunctionRunnerSettings

log = get_logger("puras_function_runner")

PRODUCER = "function-runner"


class JobFailure(Exception):
    """Why an attempt failed, in the words the job's ``error`` will show."""

    def __init__(self, error: str, *, reason: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.reason = reason
        self.detail = detail


class FunctionRunner:
    def __init__(
        self,
        *,
        settings: FunctionRunnerSettings,
        js: JetStreamContext,
        deployments: Deployments,
        payloads: PayloadStore,
    ) -> None:
        self.settings = settings
        self.js = js
        self.deployments = deployments
        self.payloads = payloads
        self.work_root = deployments.cache_dir / "work"
        self.drop_privileges = os.geteuid() == 0
        self.completed = 0

    async def work(self, delivery: Delivery, lease: Lease) -> None:
        command = delivery.event
        assert isinstance(command, RunFunction)
        p = command.payload
        with bound_contextvars(job_id=str(command.job_id), workspace_id=str(command.workspace_id)):
            started_at = time.monotonic()
            await self._emit(command, JobStarted, StartedPayload(attempt=p.attempt, runner=self.settings.instance_id))
            try:
                try:
                    value = await self._run(command, p)
                except (JobFailure, asyncio.CancelledError, *TRANSIENT_ERRORS):
                    raise
                except Exception as exc:
                    log.exception("runner failed the job")
                    raise JobFailure(f"the runner failed to run the job: {type(exc).__name__}: {exc}", reason="runtime") from exc
            except JobFailure as failure:
                terminal: Event = self._event(
                    command,
                    JobFailed,
                    FailedPayload(
                        attempt=p.attempt,
                        error=failure.error,
                        error_detail=failure.detail,
                        reason=failure.reason,  # type: ignore[arg-type]
                        duration_ms=int((time.monotonic() - started_at) * 1000),
                    ),
                )
            else:
                result, result_ref = value, None
                if len(orjson.dumps(value)) > self.settings.inline_payload_bytes:
                    key = payload_key(command.workspace_id, command.job_id, "result")  # type: ignore[arg-type]
                    result, result_ref = None, await self.payloads.put(key, value)
                terminal = self._event(
                    command,
                    JobSucceeded,
                    SucceededPayload(
                        attempt=p.attempt,
                        result=result,
                        result_ref=result_ref,
                        duration_ms=int((time.monotonic() - started_at) * 1000),
                    ),
                )
            await publish(self.js, [terminal])
            await lease.ack()
            self.completed += 1

    async def _run(self, command: RunFunction, p: RunPayload) -> Any:
        try:
            prepared = await self.deployments.prepare(p.deployment_id)
        except PrepareError as exc:
            raise JobFailure(str(exc), reason="runtime") from None
        manifest = prepared.skills.get(p.skill_name)
        if manifest is None:
            raise JobFailure(f"skill {p.skill_name!r} is not in deployment {p.deployment_id}", reason="runtime")
        inputs = p.inputs if p.inputs is not None else await self.payloads.get(p.inputs_ref or "")
        outcome = await self._execute(command, p, prepared, inputs)
        value = self._value(outcome, p)
        schema = manifest.get("output_schema")
        if schema is not None and (problems := validate(schema, value, root=("result",))):
            first = problems[0]
            raise JobFailure(
                f"result does not match the output_schema: {first.message} at {first.pointer}",
                reason="output_schema",
                detail={"problems": [d.model_dump() for d in problems]},
            )
        return value

    async def _execute(self, command: RunFunction, p: RunPayload, prepared: Prepared, inputs: Any) -> Outcome:
        file, _, function = p.entrypoint.partition(":")
        module = file[: -len(".py")].replace("/", ".")
        skill_dir = prepared.root / "skills" / p.skill_name
        workdir = self.work_root / str(command.job_id)
        workdir.mkdir(mode=0o700)
        try:
            if self.drop_privileges:
                os.chown(workdir, self.settings.sandbox_uid, self.settings.sandbox_gid)
            server = await self.deployments.fork_server(prepared)
            call = PythonCall(import_dir=str(skill_dir), module=module, function=function, payload=orjson.dumps(inputs))
            limits = Limits(
                cpu_seconds=p.timeout_seconds + 5,
                address_space_bytes=self.settings.memory_limit_bytes,
                open_files=self.settings.max_open_files,
                processes=self.settings.max_processes,
                file_size_bytes=self.settings.max_file_bytes,
            )
            try:
                child = await server.spawn(call, workdir=str(workdir), env=self._env(command, p, workdir, prepared), limits=limits)
            except SandboxError as exc:
                raise JobFailure(f"could not start the job's process: {exc}", reason="runtime") from None
            pump = LogPump(self.js, job_id=command.job_id, workspace_id=command.workspace_id, attempt=p.attempt, caused_by=command)  # type: ignore[arg-type]
            readers = asyncio.gather(pump.follow(child.stdout, "stdout"), pump.follow(child.stderr, "stderr"))
            try:
                outcome = await asyncio.wait_for(child.wait(), p.timeout_seconds)
            except TimeoutError:
                await child.kill()
                await readers
                await pump.drain()
                raise JobFailure(
                    f"job exceeded its timeout of {p.timeout_seconds} s and was killed "
                    "(set timeout_seconds in skill.yaml; the platform maximum is 3600 s)",
                    reason="timeout",
                    detail={"timeout_seconds": p.timeout_seconds},
                ) from None
            except ForkServerDied as exc:
                raise JobFailure(f"the job's host process died: {exc}", reason="runtime") from None
            except asyncio.CancelledError:
                await child.kill()
                raise
            await readers
            await pump.drain()
            return outcome
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _value(self, outcome: Outcome, p: RunPayload) -> Any:
        result = outcome.result
        if result is None:
            if outcome.signal is not None:
                name = signal.Signals(outcome.signal).name
                hint = " (the memory or CPU limit, or an explicit kill)" if outcome.signal in (signal.SIGKILL, signal.SIGXCPU, signal.SIGSEGV) else ""
                raise JobFailure(
                    f"the job's process was killed by {name}{hint} before returning a result",
                    reason="runtime",
                    detail={"signal": outcome.signal},
                )
            raise JobFailure(
                f"the job's process exited with code {outcome.exit_code} before returning a result",
                reason="runtime",
                detail={"exit_code": outcome.exit_code},
            )
        if result.get("ok"):
            return result.get("value")
        error = result.get("error") or {}
        kind = error.get("type", "Error")
        message = error.get("message", "")
        reason = "invalid_result" if kind == "ResultNotJSON" else "exception"
        raise JobFailure(f"{kind}: {message}" if message else kind, reason=reason, detail=error)

    def _env(self, command: RunFunction, p: RunPayload, workdir: Path, prepared: Prepared) -> dict[str, str]:
        token = mint_job_token(
            self.settings.job_token_key.get_secret_value(),
            workspace_id=command.workspace_id,  # type: ignore[arg-type]
            job_id=command.job_id,  # type: ignore[arg-type]
            skillpack_id=p.skillpack_id,
            ttl_seconds=p.timeout_seconds + 300,
        )
        bin_dirs = [str(Path(prepared.python).parent)] if prepared.site_packages else []
        return {
            "PATH": ":".join([*bin_dirs, "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PURAS_API_BASE": self.settings.api_base,
            "PURAS_JOB_TOKEN": token,
            "PURAS_JOB_ID": str(command.job_id),
            "PURAS_WORKSPACE_ID": str(command.workspace_id),
            "PURAS_SKILL": p.skill_name,
            "PURAS_DEPLOYMENT_ROOT": str(prepared.root),
        }

    def _event(self, command: RunFunction, cls: type[Event], payload: Any) -> Event:
        return cls.new(payload, producer=PRODUCER, workspace_id=command.workspace_id, job_id=command.job_id, caused_by=command)

    async def _emit(self, command: RunFunction, cls: type[Event], payload: Any) -> None:
        await publish(self.js, [self._event(command, cls, payload)])

