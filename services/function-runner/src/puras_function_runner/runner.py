"""Running one attempt of a deterministic skill's job.

started (while the skillpack's secrets are fetched, sealed to this runner) → prepare the
deployment (cached) → fork the job from its warm parent with its own workdir, env (secrets
included) and rlimits → stream its output as ``log`` events → wait, within the wall-clock
timeout → validate the result → succeeded | failed. Secret values are masked in everything the
runner shows: log lines, errors, results. The WORK message is acked only after the terminal
event is acknowledged, so a runner that dies mid-way leaves the message to be redelivered.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from puras_common import tokens
from puras_common.attempts import AttemptClient, CancelWatch
from puras_common.bus import Delivery, Lease, send
from puras_common.drive import DriveClient
from puras_common.envelope import Event
from puras_common.errors import TRANSIENT_ERRORS
from puras_common.events import JobStarted, RunFunction, RunPayload
from puras_common.events.jobs import (
    CancelledPayload,
    FailedPayload,
    InputRequestedPayload,
    StartedPayload,
    SucceededPayload,
)
from puras_common.ids import new_id
from puras_common.input_requests import DEFAULT_TIMEOUT_SECONDS, QuestionError, check_question
from puras_common.logging import bound_contextvars, get_logger
from puras_common.observability import SANDBOX_SPAWN_SECONDS, timed
from puras_common.payloads import PayloadStore, payload_key
from puras_common.schemas import validate_off_loop
from puras_common.secret_delivery import SecretDeliveryError, SecretMask, fetch_secrets
from puras_common.tokens import mint_job_token
from puras_jobhost.prepare import Deployments, Prepared, PrepareError
from puras_jobhost.workdrive import JobDrive, WorkDrives
from puras_pricing import carry, compute_events, report_outcome, settings_pricebook
from puras_sandbox import Child, ForkServerDied, Limits, Outcome, PythonCall, SandboxError

from puras_function_runner.logs import LogPump
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


class JobCancelledError(Exception):
    """The job was cancelled while this runner held it."""


class InputWanted(Exception):
    """The job asked a question (``puras.request_input``): the attempt ends on it."""

    def __init__(self, question: InputRequestedPayload) -> None:
        super().__init__(question.prompt)
        self.question = question


_PASSED_ON: tuple[type[BaseException], ...] = (
    JobFailure,
    JobCancelledError,
    InputWanted,
    asyncio.CancelledError,
    *TRANSIENT_ERRORS,
)
"""Raised through the attempt as they are: everything else from run() is the job's failure."""


@dataclass
class Attempt:
    """One claimed attempt of a job on this runner."""

    command: RunFunction
    number: int
    cancelled: asyncio.Event
    token: str = ""
    """The job's credential: for the in-skill SDK, and to ask for the job's secrets."""
    secrets: dict[str, str] = field(default_factory=dict)
    mask: SecretMask = field(default_factory=lambda: SecretMask(()))
    """Hides the secret values in whatever the runner shows."""
    fetching: asyncio.Task[dict[str, str]] | None = None
    """Asking for the secrets, while the rest of the job is made ready."""
    started: Callable[[], Awaitable[None]] | None = None
    """Confirms ``job.started``, sent as the attempt began."""
    compute: list[Event] = field(default_factory=list)
    """The usage of the job's process's compute, measured once it exited."""

    @property
    def spec(self) -> RunPayload:
        return self.command.payload

    @property
    def job_id(self) -> UUID:
        assert self.command.job_id is not None
        return self.command.job_id

    @property
    def workspace_id(self) -> UUID:
        assert self.command.workspace_id is not None
        return self.command.workspace_id


class FunctionRunner:
    def __init__(
        self,
        *,
        settings: FunctionRunnerSettings,
        js: JetStreamContext,
        nc: NATS,
        deployments: Deployments,
        payloads: PayloadStore,
        attempts: AttemptClient,
        cancels: CancelWatch,
    ) -> None:
        self.settings = settings
        self.js = js
        self.nc = nc
        """Secrets are asked for over core request/reply."""
        self.deployments = deployments
        self.payloads = payloads
        self.attempts = attempts
        self.cancels = cancels
        self.work_root = deployments.cache_dir / "work"
        self.drop_privileges = os.geteuid() == 0
        self.completed = 0
        self.prices = settings_pricebook(settings)
        drive = DriveClient(
            settings.drive_url,
            token=settings.internal_token.get_secret_value(),
            client=payloads.client,
        )
        self.drives = WorkDrives(
            drive,
            owner=(settings.sandbox_uid, settings.sandbox_gid) if self.drop_privileges else None,
            ssrf_allow=settings.ssrf_allow,
            work_root=self.work_root,
            scratch_memory_bytes=settings.scratch_memory_bytes(),
        )

    async def work(self, delivery: Delivery, lease: Lease) -> None:
        command = delivery.event
        assert isinstance(command, RunFunction) and command.job_id is not None
        with bound_contextvars(job_id=str(command.job_id), workspace_id=str(command.workspace_id)):
            # The secrets travel while the scheduler decides (a claim waits on its database).
            # Only for a first delivery, whose claim runs the dispatched attempt: a redelivery's
            # claim may start a new attempt, and the secrets are handed out for that one only.
            fetching = None
            if delivery.num_delivered == 1:
                secrets_token = self._job_token(
                    command, command.payload.attempt, audiences=(tokens.SECRETS,)
                )
                fetching = asyncio.create_task(self._secrets(command.job_id, secrets_token))
            try:
                claim = await self.attempts.claim(
                    command.job_id,
                    dispatched_attempt=command.payload.attempt,
                    delivery=delivery.num_delivered,
                )
            except BaseException:
                if fetching is not None:
                    fetching.cancel()
                raise
            if not claim.run:
                if fetching is not None:
                    fetching.cancel()
                log.info("not running the job", reason=claim.reason)
                await lease.ack()
                return
            with self.cancels.watch(command.job_id) as cancelled:
                token = self._job_token(command, claim.attempt)
                attempt = Attempt(command, claim.attempt, cancelled, token=token, fetching=fetching)
                event_type, payload = await self._attempt(attempt)
            payload = await carry(self.js, attempt.compute, payload)
            await report_outcome(
                self.attempts,
                self.js,
                command,
                attempt=attempt.number,
                event_type=event_type,
                outcome=payload,
                producer=PRODUCER,
            )
            await lease.ack()
            self.completed += 1

    def _meter(self, attempt: Attempt, cpu_ms: int, wall_ms: int) -> None:
        """Measure the attempt's compute once its process has exited and its output is read. It
        goes with the outcome: the event that ends the attempt carries it when it costs nothing
        (see :func:`puras_pricing.carried`), and it is stored before that event otherwise."""
        attempt.compute = compute_events(
            self.prices,
            attempt.command,
            key_id=attempt.spec.key_id,
            attempt=attempt.number,
            cpu_ms=cpu_ms,
            wall_ms=wall_ms,
            producer=PRODUCER,
        )

    async def _attempt(self, attempt: Attempt) -> tuple[str, Any]:
        """Run the attempt; returns the terminal event's type and payload."""
        started_at = time.monotonic()
        if attempt.fetching is None:  # normally asked for while the job was claimed
            attempt.token = attempt.token or self._job_token(attempt.command, attempt.number)
            secrets_token = self._job_token(
                attempt.command, attempt.number, audiences=(tokens.SECRETS,)
            )
            attempt.fetching = asyncio.create_task(self._secrets(attempt.job_id, secrets_token))
        # Sent now, confirmed before the outcome is reported: the job need not wait for the
        # server's ack to start, and the terminal event still comes after it.
        attempt.started = started = await send(
            self.js,
            [
                self._event(
                    attempt,
                    JobStarted,
                    StartedPayload(attempt=attempt.number, runner=self.settings.instance_id),
                )
            ],
        )
        try:
            return await self._outcome(attempt, started_at)
        finally:
            if not attempt.fetching.done():
                attempt.fetching.cancel()
            elif not attempt.fetching.cancelled():
                attempt.fetching.exception()  # retrieved: a refusal was already reported, or never needed
            await started()

    async def _outcome(self, attempt: Attempt, started_at: float) -> tuple[str, Any]:

        def elapsed() -> int:
            return int((time.monotonic() - started_at) * 1000)

        try:
            try:
                value = await self._run(attempt)
                value = attempt.mask.value(value)  # the mask is known only once the secrets are
            except _PASSED_ON:
                raise
            except Exception as exc:
                log.exception("runner failed the job")
                raise JobFailure(
                    f"the runner failed to run the job: {type(exc).__name__}: {exc}",
                    reason="runtime",
                ) from exc
        except JobCancelledError:
            return "job.cancelled", CancelledPayload(
                attempt=attempt.number, reason="cancelled while running"
            )
        except InputWanted as wanted:
            return "job.input_requested", wanted.question.model_copy(
                update={"attempt": attempt.number}
            )
        except JobFailure as failure:
            return "job.failed", FailedPayload(
                attempt=attempt.number,
                error=_storable(attempt.mask.text(failure.error)),
                error_detail=_storable(attempt.mask.value(failure.detail)),
                reason=failure.reason,
                duration_ms=elapsed(),
            )
        result, result_ref = value, None
        if len(orjson.dumps(value)) > self.settings.inline_payload_bytes:
            key = payload_key(attempt.workspace_id, attempt.job_id, "result")
            result, result_ref = None, await self.payloads.put(key, value)
        return "job.succeeded", SucceededPayload(
            attempt=attempt.number, result=result, result_ref=result_ref, duration_ms=elapsed()
        )

    async def _secrets(self, job_id: UUID, token: str) -> dict[str, str]:
        """The skillpack's secrets for this job; a refusal fails the job, silence is retried."""
        try:
            return await fetch_secrets(self.nc, job_token=token, job_id=job_id)
        except SecretDeliveryError as exc:
            raise JobFailure(
                f"could not get the skillpack's secrets: {exc}", reason="runtime"
            ) from None

    async def _run(self, attempt: Attempt) -> Any:
        p = attempt.spec
        try:
            prepared = await self.deployments.prepare(p.deployment_id)
        except PrepareError as exc:
            raise JobFailure(str(exc), reason="runtime") from None
        manifest = prepared.skills.get(p.skill_name)
        if manifest is None:
            raise JobFailure(
                f"skill {p.skill_name!r} is not in deployment {p.deployment_id}", reason="runtime"
            )
        inputs = p.inputs if p.inputs is not None else await self.payloads.get(p.inputs_ref or "")
        outcome = await self._execute(
            attempt, prepared, inputs, network=manifest.get("network", True)
        )
        value = self._value(outcome, p)
        if (where := _nul_at(value)) is not None:
            raise JobFailure(
                f"the result holds a NUL character (U+0000) at {where or '/'}; results are stored as JSON "
                "text that cannot contain it: encode binary data (base64) or write it to a file",
                reason="invalid_result",
                detail={"pointer": where},
            )
        schema = manifest.get("output_schema")
        if schema is not None and (
            problems := await validate_off_loop(schema, value, root=("result",))
        ):
            first = problems[0]
            raise JobFailure(
                f"result does not match the output_schema: {first.message} at {first.pointer}",
                reason="output_schema",
                detail={"problems": [d.model_dump() for d in problems]},
            )
        return value

    async def _execute(
        self, attempt: Attempt, prepared: Prepared, inputs: Any, *, network: bool
    ) -> Outcome:
        p = attempt.spec
        file, _, function = p.entrypoint.partition(":")
        module = file[: -len(".py")].replace("/", ".")
        skill_dir = prepared.root / "skills" / p.skill_name
        # Per attempt: a lost attempt's directory may still be there, on this host.
        # Under the workspace's own directory: the only one its sandboxes can write, or see.
        work_root = self.deployments.work_dir(attempt.workspace_id)
        workdir = Path(
            tempfile.mkdtemp(prefix=f"{attempt.job_id}.{attempt.number}.", dir=work_root)
        )
        drive = None
        try:
            answers_file = _write_answers(workdir, p.resume.answers) if p.resume else None
            owner = await self.drives.owner_for(attempt.workspace_id)
            if owner is not None:
                os.chown(workdir, *owner)
            drive = await self.drives.attach(
                workdir,
                workspace_id=attempt.workspace_id,
                job_id=attempt.job_id,
                skill_name=p.skill_name,
                inputs=inputs,
            )
            server = await self.deployments.fork_server(
                prepared,
                workspace_id=attempt.workspace_id,
                network=network,
                rw_binds=(str(drive.host_dir),) if drive.host_dir is not None else (),
                owner=owner,
            )
            call = PythonCall(
                import_dir=str(skill_dir),
                module=module,
                function=function,
                payload=orjson.dumps(inputs),
            )
            limits = Limits(
                cpu_seconds=p.timeout_seconds + 5,
                address_space_bytes=self.settings.memory_limit_bytes,
                open_files=self.settings.max_open_files,
                processes=self.settings.max_processes,
                file_size_bytes=self.settings.max_file_bytes,
            )
            if attempt.cancelled.is_set():
                raise JobCancelledError
            assert attempt.fetching is not None
            attempt.secrets = await attempt.fetching
            attempt.mask = SecretMask(attempt.secrets.values())
            # The child runs from its fork, before the zygote's reply reaches us: its wall
            # time starts when it is asked for, so it covers all of the child's own.
            spawned_at = time.monotonic()
            try:
                with timed(SANDBOX_SPAWN_SECONDS):
                    child = await server.spawn(
                        call,
                        workdir=str(workdir),
                        env={
                            **self._env(attempt, workdir, prepared),
                            **drive.env,
                            **self.deployments.job_env(network=network),
                            **({ANSWERS_ENV: str(answers_file)} if answers_file else {}),
                        },
                        limits=limits,
                    )
            except SandboxError as exc:
                raise JobFailure(
                    f"could not start the job's process: {exc}", reason="runtime"
                ) from None
            pump = LogPump(
                self.js,
                job_id=attempt.job_id,
                workspace_id=attempt.workspace_id,
                attempt=attempt.number,
                caused_by=attempt.command,
                mask=attempt.mask.text,
                max_bytes=self.settings.max_log_bytes,
            )
            readers = asyncio.gather(
                pump.follow(child.stdout, "stdout"), pump.follow(child.stderr, "stderr")
            )
            try:
                outcome = await self._wait(child, attempt)
                wall_ms = _ms_since(spawned_at)
            except JobCancelledError:
                await child.terminate(grace=self.settings.cancel_grace_seconds)
                await readers
                await pump.drain()
                self._meter(attempt, await _cpu_ms(child), _ms_since(spawned_at))
                raise
            except TimeoutError:
                await child.kill()
                await readers
                await pump.drain()
                self._meter(attempt, await _cpu_ms(child), _ms_since(spawned_at))
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
            self._meter(attempt, outcome.cpu_ms, wall_ms)
            await drive.save()
            return outcome
        finally:
            try:
                if drive is not None:
                    await drive.settle()  # what it wrote is saved before its end is reported
            finally:
                # Unmounting the drive and removing the folder are nobody's wait: a thread does
                # both, in that order, while the result travels.
                removal = asyncio.get_running_loop().run_in_executor(
                    None, _remove_workdir, workdir, drive
                )
                removal.add_done_callback(_report_removal)

    async def _wait(self, child: Child, attempt: Attempt) -> Outcome:
        """The child's outcome; TimeoutError past the job's timeout, JobCancelledError on cancel."""
        finished = asyncio.ensure_future(child.wait())
        cancelled = asyncio.ensure_future(attempt.cancelled.wait())
        try:
            done, _ = await asyncio.wait(
                {finished, cancelled},
                timeout=attempt.spec.timeout_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            cancelled.cancel()
        if finished in done:
            return finished.result()
        finished.cancel()
        if cancelled in done:
            raise JobCancelledError
        raise TimeoutError

    def _value(self, outcome: Outcome, p: RunPayload) -> Any:
        result = outcome.result
        if result is None:
            if outcome.signal is not None:
                name = signal.Signals(outcome.signal).name
                hint = (
                    " (the memory or CPU limit, or an explicit kill)"
                    if outcome.signal in (signal.SIGKILL, signal.SIGXCPU, signal.SIGSEGV)
                    else ""
                )
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
        if kind == "InputRequested":
            raise InputWanted(_question(error.get("message", ""), p))
        message = error.get("message", "")
        reason = "invalid_result" if kind == "ResultNotJSON" else "exception"
        raise JobFailure(f"{kind}: {message}" if message else kind, reason=reason, detail=error)

    def _job_token(
        self,
        command: RunFunction,
        attempt: int,
        *,
        audiences: tuple[str, ...] = tokens.JOB_AUDIENCES,
    ) -> str:
        """The token of one attempt: the job's own (drive, media, subagents), or the one this
        runner asks for the job's secrets with."""
        p = command.payload
        return mint_job_token(
            self.settings.job_token_key.get_secret_value(),
            workspace_id=command.workspace_id,
            job_id=command.job_id,
            skillpack_id=p.skillpack_id,
            attempt=attempt,
            audiences=audiences,
            ttl_seconds=p.timeout_seconds + 300,
        )

    def _env(self, attempt: Attempt, workdir: Path, prepared: Prepared) -> dict[str, str]:
        """The secrets, then what the platform sets (secrets cannot take those names)."""
        p = attempt.spec
        bin_dirs = [str(Path(prepared.python).parent)] if prepared.site_packages else []
        return {
            **attempt.secrets,
            "PATH": ":".join([*bin_dirs, "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PURAS_API_BASE": self.settings.api_base,
            "PURAS_JOB_TOKEN": attempt.token,
            "PURAS_JOB_ID": str(attempt.job_id),
            "PURAS_WORKSPACE_ID": str(attempt.workspace_id),
            "PURAS_SKILL": p.skill_name,
            "PURAS_DEPLOYMENT_ROOT": str(prepared.root),
        }

    def _event(self, attempt: Attempt, cls: type[Event], payload: Any) -> Event:
        return cls.new(
            payload,
            producer=PRODUCER,
            workspace_id=attempt.workspace_id,
            job_id=attempt.job_id,
            caused_by=attempt.command,
        )


ANSWERS_ENV = "PURAS_INPUT_ANSWERS"
"""Where ``puras.request_input`` finds the answers a job got so far (see puras.asking)."""
ANSWERS_FILE = ".puras-answers.json"


def _write_answers(workdir: Path, answers: list[Any]) -> Path:
    """The answers, written into the attempt's fresh workdir before anything of the job's runs
    there (and never through a link: the name must not exist yet)."""
    path = workdir / ANSWERS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(answers))
    return path


def _question(message: str, p: RunPayload) -> InputRequestedPayload:
    """The question a job's ``puras.request_input`` raised, checked against the bounds."""
    try:
        asked = orjson.loads(message)
        if not isinstance(asked, dict):
            raise ValueError("not an object")
    except ValueError:
        raise JobFailure(
            "InputRequested was raised without a question: call puras.request_input(prompt, schema, timeout)",
            reason="exception",
        ) from None
    timeout = asked.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
    answered = len(p.resume.answers) if p.resume else 0
    try:
        check_question(asked.get("prompt"), asked.get("schema"), timeout, asked=answered)
    except QuestionError as exc:
        raise JobFailure(
            f"request_input: {exc}", reason="exception", detail={"type": "InputRequested"}
        ) from None
    return InputRequestedPayload(
        attempt=p.attempt,
        request_id=new_id(),
        number=answered + 1,
        prompt=asked["prompt"],
        answer_schema=asked["schema"],
        timeout_seconds=timeout,
    )


def _nul_at(value: Any, path: str = "") -> str | None:
    """The JSON pointer of the first string (or key) holding U+0000 in ``value``, if any."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, list):
        return next(
            (w for i, v in enumerate(value) if (w := _nul_at(v, f"{path}/{i}")) is not None), None
        )
    if isinstance(value, dict):
        for k, v in value.items():
            key = str(k).replace("~", "~0").replace("/", "~1")
            if "\x00" in str(k):
                return f"{path}/{key}"
            if (w := _nul_at(v, f"{path}/{key}")) is not None:
                return w
    return None


def _storable(value: Any) -> Any:
    """Errors are shown as they are, but with U+0000 replaced: it cannot be stored."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    return value


def _remove_workdir(workdir: Path, drive: JobDrive | None) -> None:
    """Let go of the job's drive (an overlay is unmounted), then remove its folder."""
    try:
        if drive is not None:
            drive.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _report_removal(removal: asyncio.Future[None]) -> None:
    """A job's workdir removal runs in a thread nobody awaits: its failure is logged here."""
    if not removal.cancelled() and (exc := removal.exception()) is not None:
        log.warning("a job's workdir could not be removed", error=repr(exc))


def _ms_since(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


async def _cpu_ms(child: Child) -> int:
    """The CPU time of a child that was stopped (0 if its host died with it)."""
    try:
        return (await child.wait()).cpu_ms
    except ForkServerDied:
        return 0
