"""Warm-start latency of puras_sandbox fork servers.

Measures, on a warm :class:`puras_sandbox.ForkServer`, for an echo skill:

* spawn -> run(): from just before ``spawn()`` to the moment the user's ``run()`` starts
  (the skill returns ``time.monotonic_ns()``, a clock shared by every process on the host,
  PID namespaces included);
* spawn -> wait(): until ``Child.wait()`` has returned the outcome;

unsandboxed and, when bubblewrap works here, in the full sandbox a job runs in on the platform
(bwrap, a uid of the workspace's own from the job uid range when run as root, each zygote
another workspace's, not dumpable); then jobs/s with two zygotes side by side (one job in flight
per zygote, then four).

    .venv/bin/python bench/sandbox_warm_start.py [--runs N] [--json]

Targets: spawn -> run() p50 under 2 ms unsandboxed and at most 3 ms sandboxed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import py_compile
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from puras_sandbox import ForkServer, Isolation, PythonCall, bwrap_available

NOBODY = 65534
WORKSPACE_UID_BASE = 2_000_000
"""The default first uid of the range workspaces get theirs from (``PURAS_SANDBOX_UID_BASE``)."""
ECHO = """\
from time import monotonic_ns


def run(inputs):
    started = monotonic_ns()
    return {"echo": inputs, "started_ns": started}
"""


def _world_executable(path: str) -> bool:
    real = os.path.realpath(path)
    if not os.path.isfile(real) or not os.stat(real).st_mode & stat.S_IXOTH:
        return False
    parent = os.path.dirname(real)
    while True:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return False
        if parent == "/":
            return True
        parent = os.path.dirname(parent)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(_pct(values, 50), 3),
        "p99_ms": round(_pct(values, 99), 3),
        "min_ms": round(min(values), 3),
        "max_ms": round(max(values), 3),
    }


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.skill = root / "skill"
        self.jobs = root / "jobs"
        self.skill.mkdir()
        self.jobs.mkdir()
        (self.skill / "main.py").write_text(ECHO)
        # the platform compiles a deployment once when preparing it; jobs can't write pyc
        py_compile.compile(str(self.skill / "main.py"), doraise=True)
        os.chmod(root, 0o755)
        if os.geteuid() == 0:
            os.chown(self.jobs, NOBODY, NOBODY)

    def call(self, i: int) -> PythonCall:
        return PythonCall(
            import_dir=str(self.skill),
            module="main",
            function="run",
            payload=json.dumps({"i": i, "text": "hello"}).encode(),
        )

    async def one(self, fs: ForkServer, i: int) -> tuple[float, float]:
        t0 = time.monotonic_ns()
        child = await fs.spawn(self.call(i), workdir=str(self.jobs), env={"JOB": str(i)})
        outcome = await child.wait()
        t1 = time.monotonic_ns()
        if outcome.result is None or not outcome.result.get("ok"):
            raise RuntimeError(f"job {i} failed: {outcome} {await child.stderr.read()!r}")
        started = outcome.result["value"]["started_ns"]
        return (started - t0) / 1e6, (t1 - t0) / 1e6

    async def latency(
        self, fs: ForkServer, runs: int, warmup: int = 20, pause: float = 0.0
    ) -> dict[str, Any]:
        for i in range(warmup):
            await self.one(fs, i)
        to_run, to_wait = [], []
        for i in range(runs):
            if pause:
                await asyncio.sleep(pause)
            a, b = await self.one(fs, i)
            to_run.append(a)
            to_wait.append(b)
        return {"spawn_to_run": _summary(to_run), "spawn_to_wait": _summary(to_wait), "runs": runs}

    async def throughput(
        self, servers: list[ForkServer], jobs: int, in_flight: int
    ) -> dict[str, Any]:
        counter = iter(range(jobs))

        async def worker(fs: ForkServer) -> int:
            done = 0
            for i in counter:
                await self.one(fs, i)
                done += 1
            return done

        t0 = time.monotonic()
        done = await asyncio.gather(*(worker(fs) for fs in servers for _ in range(in_flight)))
        elapsed = time.monotonic() - t0
        return {
            "zygotes": len(servers),
            "in_flight_per_zygote": in_flight,
            "jobs": sum(done),
            "seconds": round(elapsed, 3),
            "jobs_per_s": round(sum(done) / elapsed, 1),
        }


def _server(
    bench: Bench, *, sandboxed: bool, name: str, prefork: bool, workspace: int = 0
) -> ForkServer:
    root = os.geteuid() == 0
    if not sandboxed:
        return ForkServer(
            python=sys.executable, sys_path=[], preload=("json",), name=name, prefork=prefork
        )
    python = sys.executable
    uid = None
    if root:
        candidates = [p for p in (sys.executable, "/usr/bin/python3") if _world_executable(p)]
        if candidates:
            python, uid = candidates[0], WORKSPACE_UID_BASE + workspace
    iso = Isolation(ro_binds=(str(bench.skill),), rw_binds=(str(bench.jobs),))
    return ForkServer(
        python=python,
        sys_path=[],
        preload=("json",),
        uid=uid,
        gid=uid,
        isolation=iso,
        name=name,
        prefork=prefork,
    )


async def run_mode(
    bench: Bench, *, sandboxed: bool, runs: int, prefork: bool = True
) -> dict[str, Any]:
    servers = [
        _server(bench, sandboxed=sandboxed, name=f"bench-{i}", prefork=prefork, workspace=i)
        for i in range(2)
    ]
    for fs in servers:
        await fs.start()
    try:
        first = servers[0]
        result: dict[str, Any] = {
            "python": _shown(first.python),
            "uid": first.uid,
            "prefork": prefork,
            "back_to_back": await bench.latency(first, runs),
            # jobs that arrive with a little idle time in between (the usual case)
            "spaced_2ms": await bench.latency(first, runs, pause=0.002),
            "throughput": [
                await bench.throughput(servers, max(200, runs), 1),
                await bench.throughput(servers, max(400, runs * 2), 4),
            ],
        }
    finally:
        for fs in servers:
            await fs.close()
    return result


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="measured jobs per series")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument(
        "--no-prefork",
        action="store_true",
        help="fork at spawn time instead of using a pre-forked warm child",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="puras-sbx-bench-"))
    try:
        bench = Bench(tmp)
        report: dict[str, Any] = {
            "host": {
                "cpus": os.cpu_count(),
                "kernel": platform.release(),
                "python": platform.python_version(),
            },
            "unsandboxed": await run_mode(
                bench, sandboxed=False, runs=args.runs, prefork=not args.no_prefork
            ),
        }
        uid = NOBODY if os.geteuid() == 0 else None
        if bwrap_available(uid, uid):
            report["sandboxed"] = await run_mode(
                bench, sandboxed=True, runs=args.runs, prefork=not args.no_prefork
            )
        else:
            report["sandboxed"] = {"skipped": "bubblewrap not available"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"host: {report['host']}")
    for mode in ("unsandboxed", "sandboxed"):
        data = report[mode]
        if "skipped" in data:
            print(f"{mode}: skipped ({data['skipped']})")
            continue
        print(f"{mode} (python {data['python']}, uid {data['uid']}, prefork {data['prefork']}):")
        for series in ("back_to_back", "spaced_2ms"):
            s = data[series]
            r, w = s["spawn_to_run"], s["spawn_to_wait"]
            print(
                f"  {series:13s} spawn->run() p50 {r['p50_ms']:6.3f} ms"
                f"  p99 {r['p99_ms']:6.3f} ms"
                f" | spawn->wait() p50 {w['p50_ms']:6.3f} ms  p99 {w['p99_ms']:6.3f} ms"
                f"  ({s['runs']} runs)"
            )
        for t in data["throughput"]:
            print(
                f"  throughput: {t['zygotes']} zygotes x {t['in_flight_per_zygote']} in flight:"
                f" {t['jobs_per_s']} jobs/s ({t['jobs']} jobs in {t['seconds']} s)"
            )
    return 0


def _shown(path: str) -> str:
    """An interpreter path as the report shows it: relative to the checkout when inside it, so
    results name no machine's directories."""
    root = Path(__file__).resolve().parent.parent
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
