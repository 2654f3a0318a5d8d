"""Stopping ``make bench`` with Ctrl-C or SIGTERM stops everything it started: the platform's
services and its engines, PostgreSQL included; nothing is left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def descendants(pid: int) -> dict[int, str]:
    """Every process under ``pid`` (children, theirs…): pid → start time and command line."""
    parents: dict[int, int] = {}
    seen: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
        seen[int(entry.name)] = f"{fields[19]} {cmdline}"
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = seen[child]
                frontier.append(child)
    return found


def alive(pid: int, identity: str) -> bool:
    """Still running as the same process (same start time), not a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] != "Z" and identity.startswith(fields[19] + " ")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopping_a_bench_run_stops_the_platform_it_started(sig: int, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PURAS_")}
    with open(tmp_path / "bench.log", "w") as log:
        bench = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "run.py"), "--quick"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        started: dict[int, str] = {}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            started |= descendants(bench.pid)
            commands = " ".join(started.values())
            if "postgres" in commands and "puras_gateway" in commands:
                break
            assert bench.poll() is None, (tmp_path / "bench.log").read_text()[-3000:]
            time.sleep(0.2)
        else:
            raise AssertionError("the bench's platform never started")
        time.sleep(3)  # into the workloads
        started |= descendants(bench.pid)
        bench.send_signal(sig)
        bench.wait(timeout=120)
    finally:
        if bench.poll() is None:
            bench.kill()
    left = {pid: what for pid, what in started.items() if alive(pid, what)}
    assert not left, left
    # And its throw-away state (PostgreSQL's data directory with it) is gone.
    postgres = next(what for what in started.values() if " -D " in what and "postgres" in what)
    data_dir = Path(postgres.split(" -D ", 1)[1].split()[0])
    state = next(p for p in data_dir.parents if p.name.startswith("puras-bench-"))
    assert not state.exists(), sorted(state.rglob("*"))[:20]
