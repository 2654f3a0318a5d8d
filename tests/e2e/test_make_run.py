"""``make run`` on a clean checkout: ``puras up`` (what ``make run`` starts once installed)
brings up embedded NATS and PostgreSQL and every service, prints the gateway URL, an API key and
a curl command, and that command — run with the real curl — returns a succeeded job. Ctrl-C
stops everything; a second start reuses the data."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
PURAS = Path(sys.executable).parent / "puras"


def start(cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PURAS_")}
    return subprocess.Popen(
        [str(PURAS), "up"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def read_until_ready(proc: subprocess.Popen[str], *, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.strip().startswith("Ctrl-C stops everything"):
            return "".join(seen)
    raise AssertionError("puras up did not become ready:\n" + "".join(seen[-60:]))


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    return out


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_puras_up_reaches_ready_and_the_printed_curl_succeeds() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="puras-up-"))
    workdir.chmod(0o755)  # as a checkout is; mkdtemp makes it private
    try:
        shutil.copytree(ROOT / "examples", workdir / "examples")
        proc = start(workdir)
        try:
            banner = read_until_ready(proc)
            assert "Puras is ready." in banner
            key = re.search(r"API key\s+(puras_live_\S+)", banner).group(1)  # type: ignore[union-attr]
            command = banner[banner.index("curl -X POST") : banner.index("Ctrl-C")].replace(
                "\\\n", " "
            )
            result = subprocess.run(
                ["bash", "-c", command.strip() + " -sS"], capture_output=True, text=True, timeout=60
            )
            job = orjson.loads(result.stdout)
            assert job["status"] == "succeeded", job
            assert job["result"] == {"echoed": "hello"}
        finally:
            out = stop(proc)
        assert proc.returncode == 0, out[-3000:]
        assert "puras: stopped" in out
        # No service, NATS or PostgreSQL process is left behind.
        leftovers = subprocess.run(
            ["pgrep", "-f", str(workdir)], capture_output=True, text=True
        ).stdout.split()
        assert leftovers == [], subprocess.run(
            ["ps", "-fp", ",".join(leftovers)], capture_output=True, text=True
        ).stdout

        # A second start keeps the workspace, its key and the deployment.
        proc = start(workdir)
        try:
            banner = read_until_ready(proc)
            assert key in banner
            assert "created workspace" not in banner and "deployed" not in banner
            command = banner[banner.index("curl -X POST") : banner.index("Ctrl-C")].replace(
                "\\\n", " "
            )
            args = shlex.split(command)
            result = subprocess.run([*args, "-sS"], capture_output=True, text=True, timeout=60)
            assert orjson.loads(result.stdout)["status"] == "succeeded"
        finally:
            stop(proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
