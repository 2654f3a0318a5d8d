"""``puras up`` heals itself: a killed NATS or PostgreSQL is restarted by the supervisor while
jobs are queued and running, and every one of them still succeeds; while PostgreSQL is down the
API answers 503 with ``Retry-After``, never 500. When ``puras up`` itself is killed, nothing it
started lives on, and the next start sweeps whatever a killed run left."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from puras_cli.bundles import zip_project

ROOT = Path(__file__).resolve().parents[2]
PURAS = Path(sys.executable).parent / "puras"
SLOW_PROJECT = {
    "skills/nap/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 120\n",
    "skills/nap/main.py": (
        "import time\n\ndef run(inputs):\n    time.sleep(inputs['seconds'])\n"
        "    return {'tag': inputs['tag']}\n"
    ),
}

pytestmark = pytest.mark.slow


def until(check: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


class Up:
    """One ``puras up`` in its own process and state directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.home = workdir / ".puras"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PURAS_")}
        env |= {"PURAS_FUNCTION_RUNNER_LEASE_SECONDS": "3", "PURAS_STOP_GRACE_SECONDS": "10"}
        # One log per start, so a failure's log is not overwritten by the next start's.
        self.log_path = workdir / f"up-{len(list(workdir.glob('up-*.log')))}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(PURAS), "up"],
            cwd=workdir,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text()

    def what_went(self, service: str) -> str:
        """The supervisor's lines about ``service`` and every traceback in the log, for a
        failure's message."""
        lines = self.output().splitlines()
        said = [line for line in lines if f" {service} " in line and "exited" in line]
        starts = [i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line]
        shown = said + [line for i in starts for line in lines[max(0, i - 2) : i + 40]]
        return "\n".join(shown) or "\n".join(lines[-80:])

    def wait_ready(self) -> str:
        until(
            lambda: "Ctrl-C stops everything" in self.output() or self.proc.poll() is not None,
            timeout=180,
            what="puras up to be ready",
        )
        assert self.proc.poll() is None, self.output()[-4000:]
        return self.output()

    def groups(self) -> dict[str, int]:
        recorded = orjson.loads((self.home / "supervisor.json").read_bytes())
        return {name: g["pgid"] for name, g in recorded["groups"].items()}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(60)
        self.log.close()


def alive(pgid: int) -> list[int]:
    """Pids still in process group ``pgid``."""
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="puras-heal-"))
    path.chmod(0o755)
    shutil.copytree(ROOT / "examples", path / "examples")
    try:
        yield path
    finally:
        if not os.environ.get("PURAS_TEST_KEEP"):
            shutil.rmtree(path, ignore_errors=True)


def submit(http: httpx.Client, n: int, *, seconds: float, tag: str) -> list[str]:
    ids = []
    for i in range(n):
        response = http.post(
            "/v1/jobs", json={"skill": "nap", "inputs": {"seconds": seconds, "tag": f"{tag}{i}"}}
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def all_succeeded(http: httpx.Client, ids: list[str], *, timeout: float) -> None:
    def done() -> bool:
        try:
            jobs = [http.get(f"/v1/jobs/{i}").json() for i in ids]
        except httpx.TransportError:
            return False
        ended = [j for j in jobs if j.get("status") in ("succeeded", "failed", "cancelled")]
        failed = [j for j in ended if j["status"] != "succeeded"]
        assert not failed, [(j["id"], j["status"], j["error"]) for j in failed]
        return len(ended) == len(ids)

    until(done, timeout=timeout, what=f"{len(ids)} jobs to succeed")


def test_killed_engines_come_back_and_every_job_succeeds(workdir: Path) -> None:
    up = Up(workdir)
    try:
        banner = up.wait_ready()
        key = re.search(r"API key\s+(puras_live_\S+)", banner).group(1)  # type: ignore[union-attr]
        url = re.search(r"gateway\s+(http://\S+)", banner).group(1)  # type: ignore[union-attr]
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        pushed = http.post(
            "/v1/deployments",
            files={"bundle": ("b.zip", _zip(workdir), "application/zip")},
        )
        assert pushed.status_code == 201, pushed.text

        # NATS dies with jobs running and queued; more are accepted while it is down.
        first = submit(http, 12, seconds=0.5, tag="a")
        nats_pgid = up.groups()["nats"]
        os.killpg(nats_pgid, signal.SIGKILL)
        during = submit(http, 4, seconds=0.2, tag="b")
        until(
            lambda: up.groups().get("nats") not in (None, nats_pgid),
            timeout=30,
            what="the supervisor to restart nats",
        )
        all_succeeded(http, first + during, timeout=120)

        # PostgreSQL dies: the API says 503 with Retry-After while it is away, then recovers.
        pg_pgid = up.groups()["postgres"]
        os.killpg(pg_pgid, signal.SIGKILL)
        seen: set[int] = set()

        def answered() -> bool:
            try:
                response = http.get("/v1/balance")
            except httpx.TransportError as exc:
                raise AssertionError(
                    f"the gateway stopped answering while PostgreSQL was down ({exc}):\n"
                    + up.what_went("gateway")
                ) from exc
            seen.add(response.status_code)
            if response.status_code == 503:
                assert response.headers["Retry-After"].isdigit()
                assert response.json()["error"]["code"] == "unavailable"
            return response.status_code == 200

        until(answered, timeout=60, what="the API to answer again")
        lines = up.output().splitlines()
        first = next((i for i, line in enumerate(lines) if "unhandled error" in line), None)
        unhandled = "\n".join(lines[first : first + 60]) if first is not None else ""
        if unhandled:
            print(unhandled)  # the whole traceback, which the assertion message cuts short
        assert 503 in seen and 500 not in seen, (seen, unhandled)
        after = submit(http, 6, seconds=0.2, tag="c")
        all_succeeded(http, after, timeout=60)
        output = up.output()
        assert "nats" in output and "restarting in" in output

        # puras up itself is killed: what it started does not live on.
        groups = up.groups()
        up.proc.kill()
        up.proc.wait()
        for name, pgid in groups.items():
            until(
                lambda pgid=pgid: not alive(pgid), timeout=15, what=f"{name} to die with puras up"
            )
    finally:
        up.close()
    # The next start finds nothing left behind, and works.
    again = Up(workdir)
    try:
        again.wait_ready()
    finally:
        again.close()
    assert again.proc.returncode == 0
    leftovers = subprocess.run(
        ["pgrep", "-f", str(workdir)], capture_output=True, text=True
    ).stdout.split()
    assert leftovers == []


def _zip(workdir: Path) -> bytes:
    project = workdir / "slow-project"
    for name, text in SLOW_PROJECT.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    return zip_project(project)
