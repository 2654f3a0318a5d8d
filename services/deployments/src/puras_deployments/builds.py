"""Running the builds of requirements.txt files: one per distinct file, whoever pushed it.

A build is a row (``builds``) claimed under a lease with ``FOR UPDATE SKIP LOCKED``, so replicas
share the work and a build whose builder died is taken over when its lease runs out. While it
runs, its log is saved every second (``GET /v1/deployments/{id}`` shows it growing). At the end,
in one transaction, the build's row and every deployment waiting for it are settled and the
``deployment.built`` events written.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from puras_common.errors import backoff, dependency_down
from puras_common.logging import get_logger
from puras_common.outbox import Outbox

from puras_deployments import deployments, wheelhouse
from puras_deployments.store import BundleStore

log = get_logger("puras_deployments.builds")

_CLAIM = """
UPDATE builds SET lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2),
                  attempts = attempts + 1, started_at = now(), log = ''
WHERE requirements_sha256 = (
    SELECT requirements_sha256 FROM builds
    WHERE status = 'building' AND (lease_expires_at IS NULL OR lease_expires_at < now())
    ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING requirements_sha256, requirements, attempts"""


class Builder:
    """Claims pending builds and runs up to ``concurrency`` of them at once."""

    def __init__(
        self,
        *,
        outbox: Outbox,
        store: BundleStore,
        sandbox: wheelhouse.BuildSandbox | None,
        work_root: Path,
        concurrency: int,
        lease_seconds: int,
        max_log_bytes: int,
    ) -> None:
        self.outbox = outbox
        self.store = store
        self.sandbox = sandbox
        """How builds run here; set before :meth:`run`."""
        self.work_root = work_root
        self.lease_seconds = lease_seconds
        self.max_log_bytes = max_log_bytes
        self.owner = f"builder-{uuid.uuid4().hex[:12]}"
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self.finished = 0

    @property
    def pool(self) -> asyncpg.Pool:
        return self.outbox.pool

    def wake(self) -> None:
        """A build may be waiting: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and run builds until cancelled (cancelling stops the builds in flight)."""
        attempt = 0
        try:
            while True:
                await self._slots.acquire()
                try:
                    row = await self.pool.fetchrow(_CLAIM, self.owner, float(self.lease_seconds))
                    attempt = 0
                except Exception as exc:
                    if not dependency_down(exc):
                        raise
                    self._slots.release()
                    log.warning("claiming a build failed", error=repr(exc))
                    await asyncio.sleep(backoff(attempt))
                    attempt += 1
                    continue
                if row is None:
                    self._slots.release()
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), 1.0)
                    continue
                task = asyncio.create_task(self._build(row))
                self._running.add(task)
                task.add_done_callback(self._done)
        finally:
            for task in list(self._running):
                task.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("build task failed", error=repr(exc))

    async def _build(self, row: asyncpg.Record) -> None:
        assert self.sandbox is not None, "Builder.sandbox is set before run()"
        sha = row["requirements_sha256"]
        build_log = wheelhouse.BuildLog(self.max_log_bytes)
        build_log.write(
            f"Building requirements.txt {sha[:12]} (attempt {row['attempts']})"
            f"{' in bubblewrap' if self.sandbox.bwrap else ' without bubblewrap'}, "
            f"as uid {self.sandbox.uid if self.sandbox.uid is not None else 'of the service'}.\n"
        )
        work = asyncio.current_task()
        assert work is not None
        keeper = asyncio.create_task(self._keep_lease(sha, build_log, work))
        error: str | None = None
        built: wheelhouse.Built | None = None
        try:
            built = await wheelhouse.build(
                self.sandbox,
                row["requirements"],
                work_root=self.work_root,
                output=self.store.wheelhouse(sha),
                log=build_log,
            )
            build_log.write(f"Built {built.wheels} wheel(s), {built.size} bytes.\n")
            await self.store.share_wheelhouse(sha)
        except wheelhouse.BuildFailed as exc:
            error = f"pip could not install requirements.txt: {exc}"
            build_log.write(f"\n{error}\n")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a broken host: say so, and do not retry forever
            log.exception("build crashed", sha=sha)
            error = f"the build could not run: {type(exc).__name__}: {exc}"
            build_log.write(f"\n{error}\n")
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        await self._settle(sha, built, error, build_log.text())

    async def _keep_lease(
        self, sha: str, build_log: wheelhouse.BuildLog, work: asyncio.Task[Any]
    ) -> None:
        """Renew the lease and save the log every second; stop the build if the lease was lost."""
        renewed = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(1.0)
            try:
                kept = await self.pool.fetchval(
                    """UPDATE builds SET lease_expires_at = now() + make_interval(secs => $3), log = $4
                       WHERE requirements_sha256 = $1 AND lease_owner = $2 RETURNING true""",
                    sha,
                    self.owner,
                    float(self.lease_seconds),
                    build_log.text(),
                )
            except Exception as exc:
                if not dependency_down(exc):
                    raise
                if asyncio.get_running_loop().time() - renewed > self.lease_seconds / 2:
                    log.warning(
                        "lost touch with the database; giving up the build",
                        sha=sha,
                        error=repr(exc),
                    )
                    work.cancel()
                    return
                continue
            if not kept:
                log.warning("build lease taken over; stopping this copy", sha=sha)
                work.cancel()
                return
            renewed = asyncio.get_running_loop().time()

    async def _settle(
        self, sha: str, built: wheelhouse.Built | None, error: str | None, text: str
    ) -> None:
        status = "ready" if error is None else "failed"
        for attempt in range(5):
            try:
                async with self.outbox.transaction() as uow:
                    owner = await uow.conn.fetchval(
                        "SELECT lease_owner FROM builds WHERE requirements_sha256 = $1 AND status = 'building' FOR UPDATE",
                        sha,
                    )
                    if owner != self.owner:
                        return  # taken over (our lease ran out): the other builder settles it
                    await uow.conn.execute(
                        """UPDATE builds SET status = $2, log = $3, error = $4, finished_at = now(),
                                             lease_owner = NULL, lease_expires_at = NULL,
                                             wheels = $5, wheelhouse_bytes = $6
                           WHERE requirements_sha256 = $1""",
                        sha,
                        status,
                        text,
                        error,
                        built.wheels if built else None,
                        built.size if built else None,
                    )
                    settled = await deployments.settle(
                        uow, sha=sha, status=status, log=text, error=error
                    )
                self.finished += 1
                log.info("build settled", sha=sha, status=status, deployments=settled)
                return
            except Exception as exc:
                if not dependency_down(exc):
                    raise
                log.warning("settling a build failed; retrying", sha=sha, error=repr(exc))
                await asyncio.sleep(backoff(attempt, base=0.2))
        # The lease runs out and another attempt builds it again.
