"""The measurements. Each returns plain numbers; run.py repeats, summarises and reports them."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import rawhttp
import sse_clients
from harness import Running, rss_bytes
from puras_cli.engines import free_port
from puras_common.bus import connect_nats
from puras_common.events import JobLogged
from puras_common.events.jobs import LoggedPayload

ECHO = {"skill": "echo", "inputs": {"text": "hello"}}


async def _terminal_counter(
    running: Running,
) -> tuple[Any, set[str], asyncio.Event, dict[str, Any]]:
    nc = await connect_nats(running.config.nats_urls["admin"], name="bench-terminal")
    done: set[str] = set()
    state: dict[str, Any] = {"want": set(), "last": 0.0}
    finished = asyncio.Event()

    async def on_terminal(msg: Any) -> None:
        # Recorded whoever it is for: a job can end before its submission's response arrives.
        done.add(msg.subject.split(".")[1])
        state["last"] = time.perf_counter()
        if state.get("submitted") and state["want"] <= done:
            finished.set()

    for suffix in ("succeeded", "failed", "cancelled"):
        await nc.subscribe(f"job.*.{suffix}", cb=on_terminal)
    await nc.flush()
    return nc, done, finished, state


async def echo_throughput(
    running: Running, key: str, *, n: int, concurrency: int = 64
) -> dict[str, float]:
    """N async submissions, ``concurrency`` in flight; jobs/s until all are terminal."""
    nc, done, finished, state = await _terminal_counter(running)
    body = orjson.dumps(ECHO)
    left = iter(range(n))

    async def submitter() -> None:
        async with rawhttp.Connection(running.url, token=key) as http:
            for _ in left:
                status, answer = await http.post("/v1/jobs", body)
                if status != 201:
                    raise RuntimeError(f"submit answered {status}: {answer[:300]!r}")
                state["want"].add(orjson.loads(answer)["id"])

    start = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(min(concurrency, n))))
    submitted = time.perf_counter()
    state["submitted"] = True
    if state["want"] <= done:
        finished.set()
    await asyncio.wait_for(finished.wait(), timeout=600)
    await nc.close()
    total = state["last"] - start
    return {"jobs_per_s": n / total, "seconds": total, "submit_per_s": n / (submitted - start)}


async def sync_round_trip(running: Running, key: str, *, m: int) -> list[float]:
    """Sequential ``wait=true`` submissions; milliseconds each."""
    out = []
    body = orjson.dumps(ECHO)
    async with rawhttp.Connection(running.url, token=key) as http:
        for _ in range(m):
            t = time.perf_counter()
            status, answer = await http.post("/v1/jobs?wait=true", body)
            out.append((time.perf_counter() - t) * 1000)
            if status != 200 or orjson.loads(answer)["status"] != "succeeded":
                raise RuntimeError(f"sync submit answered {status}: {answer[:300]!r}")
    return out


class IdleJobs:
    """Jobs that stay open (a skill that sleeps), whose streams never end; cancelled on exit so
    they hold no runner slot afterwards."""

    def __init__(self, running: Running, count: int) -> None:
        self.running = running
        self.count = count
        self.key = ""
        self.ids: list[str] = []

    async def __aenter__(self) -> IdleJobs:
        self.key = await self.running.workspace(f"idle-{uuid.uuid4().hex[:8]}")
        await self.running.push(self.key, Path(__file__).parent / "projects" / "idle")
        async with self._http() as http:
            for _ in range(self.count):
                response = await http.post(
                    "/v1/jobs", json={"skill": "wait", "inputs": {"seconds": 3600}}
                )
                response.raise_for_status()
                self.ids.append(response.json()["id"])
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._http() as http:
            for job_id in self.ids:
                await http.post(f"/v1/jobs/{job_id}/cancel")

    def _http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.running.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        )


async def _publish_marks(
    running: Running, job_ids: list[str], *, rounds: int, spacing: float
) -> None:
    """Synthetic ``log`` events (as a runner publishes them) carrying their publish time."""
    nc = await connect_nats(running.config.nats_urls["admin"], name="bench-publisher")
    js = nc.jetstream()
    ws = uuid.uuid4()
    for _ in range(rounds):
        for job_id in job_ids:
            event = JobLogged.new(
                LoggedPayload(attempt=1, stream="stdout", text=f"T{time.time_ns()}"),
                producer="function-runner",
                workspace_id=ws,
                job_id=uuid.UUID(job_id),
            )
            await js.publish(event.subject, event.to_json(), headers={"Nats-Msg-Id": str(event.id)})
        await asyncio.sleep(spacing)
    await nc.close()


async def event_delivery(running: Running, *, samples: int) -> list[float]:
    """Publish → SSE client, one stream, milliseconds."""
    async with IdleJobs(running, 1) as idle:
        tally, stop, connected = sse_clients.Tally(), asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(
            sse_clients.hold_stream(running.url, idle.key, idle.ids[0], tally, stop, connected)
        )
        await connected.wait()
        await asyncio.sleep(0.5)
        await _publish_marks(running, idle.ids, rounds=samples, spacing=0.01)
        await asyncio.sleep(0.5)
        stop.set()
        await task
    if not tally.latencies_ms:
        raise RuntimeError(
            f"no event reached the SSE client (connected {tally.connected}, failed {tally.failed})"
        )
    return tally.latencies_ms


async def sse_capacity(
    running: Running,
    *,
    streams: int,
    before: int,
    jobs: int = 100,
    processes: int = 4,
    rounds: int = 10,
) -> dict[str, Any]:
    """Hold ``streams`` SSE connections on one gateway process (idle jobs), publish ``rounds`` of
    one event per job (each reaches streams/jobs viewers), and report delivery latency and the
    gateway's memory per stream: its resident memory with the streams held, over ``before``
    (what it held before the first level; measured from each level's own start, a level would
    reuse the memory an earlier one freed and show less than its streams take)."""
    async with IdleJobs(running, jobs) as idle:
        return await _hold_streams(
            running,
            idle.key,
            idle.ids,
            streams=streams,
            before=before,
            processes=processes,
            rounds=rounds,
        )


async def _hold_streams(
    running: Running,
    key: str,
    job_ids: list[str],
    *,
    streams: int,
    before: int,
    processes: int,
    rounds: int,
) -> dict[str, Any]:
    jobs = len(job_ids)
    gateway = running.pid("gateway")
    ctx = multiprocessing.get_context("spawn")
    ready, results, stop_flag = ctx.Queue(), ctx.Queue(), ctx.Event()
    per_job = max(1, streams // jobs)
    groups = [job_ids[i::processes] for i in range(processes)]
    workers = [
        ctx.Process(
            target=sse_clients.client_process,
            args=(running.url, key, group, per_job, ready, stop_flag, results),
        )
        for group in groups
        if group
    ]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    opened = failed = 0
    for _ in workers:
        ok, bad = await asyncio.to_thread(ready.get, True, 600)
        opened, failed = opened + ok, failed + bad
    ramp = time.perf_counter() - t0
    held_rss = rss_bytes(gateway)
    await _publish_marks(running, job_ids, rounds=rounds, spacing=1.0)
    await asyncio.sleep(2.0)
    stop_flag.set()
    latencies: list[float] = []
    for _ in workers:
        latencies += await asyncio.to_thread(results.get, True, 600)
    for w in workers:
        w.join(30)
    return {
        "streams": opened,
        "failed": failed,
        "ramp_seconds": ramp,
        "bytes_per_stream": (held_rss - before) / max(1, opened),
        "deliveries": len(latencies),
        "expected_deliveries": opened * rounds,
        "latencies_ms": latencies,
    }


async def fill_history(running: Running, *, jobs: int, events: int) -> None:
    """Past jobs and events in every store a job touches: the gateway's and scheduler's tables
    and the JOBS stream."""
    pg = running.engines.postgres
    dsn = pg.dsn(database="puras") if pg else os.environ["PURAS_DATABASE_URL"]
    admin = await asyncpg.connect(dsn)
    ws = uuid.uuid4()
    try:
        job_ids = [uuid.uuid4() for _ in range(jobs)]
        now = time.time()
        from datetime import UTC, datetime

        ts = datetime.fromtimestamp(now, UTC)
        await admin.copy_records_to_table(
            "jobs",
            schema_name="gateway",
            columns=[
                "id",
                "workspace_id",
                "skill_name",
                "skillpack_slug",
                "status",
                "attempt",
                "version",
                "created_at",
                "finished_at",
            ],
            records=[(j, ws, "echo", "default", "succeeded", 1, 1, ts, ts) for j in job_ids],
        )
        base = (
            await admin.fetchval("SELECT coalesce(max(seq), 0) FROM gateway.job_events")
            + 10_000_000
        )
        await admin.copy_records_to_table(
            "job_events",
            schema_name="gateway",
            columns=["seq", "job_id", "type", "payload", "created_at"],
            records=[
                (base + i, job_ids[i % jobs], "log", '{"text": "x"}', ts) for i in range(events)
            ],
        )
        await admin.copy_records_to_table(
            "jobs",
            schema_name="scheduler",
            columns=["id", "workspace_id", "kind", "status", "attempt", "spec", "submitted_at"],
            records=[(j, ws, "function", "succeeded", 1, "{}", ts) for j in job_ids],
        )
    finally:
        await admin.close()
    nc = await connect_nats(running.config.nats_urls["admin"], name="bench-history")
    js = nc.jetstream()
    pending = []
    for i in range(events):
        event = JobLogged.new(
            LoggedPayload(attempt=1, stream="stdout", text="x"),
            producer="function-runner",
            workspace_id=ws,
            job_id=job_ids[i % jobs],
        )
        pending.append(await js.publish_async(event.subject, event.to_json()))
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    try:
        await drained(js, "JOBS")
    finally:
        await nc.close()
    # What autovacuum and the checkpointer would do after such a load, done now rather than
    # during the measurement that follows.
    admin = await asyncpg.connect(dsn)
    try:
        for table in ("gateway.jobs", "gateway.job_events", "scheduler.jobs"):
            await admin.execute(f"VACUUM (ANALYZE) {table}")
        await admin.execute("CHECKPOINT")
    finally:
        await admin.close()


async def drained(js: Any, stream: str, *, timeout: float = 1800) -> None:
    """Until every durable consumer of ``stream`` has processed all it was sent: the services
    have projected the history, so the measurement after it is not racing their catch-up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        infos = await js.consumers_info(stream)
        if all(
            i.num_pending == 0 and i.num_ack_pending == 0 for i in infos if i.config.durable_name
        ):
            return
        await asyncio.sleep(1)
    raise TimeoutError(f"consumers of {stream} still behind after {timeout:.0f} s")


class Redis:
    """A private redis-server on a free port, for the Celery peer."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> Redis:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)


class CeleryWorker:
    """``celery worker`` with prefork concurrency = cores, against ``redis``."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> CeleryWorker:
        env = {
            **os.environ,
            "BENCH_REDIS_URL": self.redis.url,
            "PYTHONPATH": str(Path(__file__).parent),
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "celery_peer",
                "worker",
                "--pool=prefork",
                f"--concurrency={os.cpu_count()}",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env=env,
            cwd=Path(__file__).parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        import celery_peer

        celery_peer.app.conf.broker_url = celery_peer.app.conf.result_backend = self.redis.url
        for _ in range(200):
            if celery_peer.app.control.ping(timeout=0.2):
                break
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def celery_throughput(task_name: str, *, n: int, concurrency: int = 64) -> dict[str, float]:
    """N submissions from ``concurrency`` threads, then wait for all results: tasks/s."""
    from concurrent.futures import ThreadPoolExecutor

    import celery_peer

    task = celery_peer.app.tasks[task_name]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda _i: task.apply_async(args=[{"text": "hello"}]), range(n)))
    submitted = time.perf_counter()
    for r in results:
        r.get(timeout=600)
    total = time.perf_counter() - start
    return {"jobs_per_s": n / total, "seconds": total, "submit_per_s": n / (submitted - start)}


def celery_round_trip(task_name: str, *, m: int) -> list[float]:
    import celery_peer

    task = celery_peer.app.tasks[task_name]
    out = []
    for _ in range(m):
        t = time.perf_counter()
        task.delay({"text": "hello"}).get(timeout=60)
        out.append((time.perf_counter() - t) * 1000)
    return out


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
