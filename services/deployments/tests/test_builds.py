"""requirements.txt builds: a push shows ``building`` and its log, the build runs once per distinct
file and is reused, pip's own message fails the push, and the build (tenant code) runs without
the platform's files, credentials or environment, and reaches out only through the egress
proxy.

Packages come from a local find-links index (a wheel or an sdist made in the test), so the
tests need no internet."""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deployments_testlib import ECHO, Harness
from puras_sandbox import bwrap_available
from puras_testing import eventually
from puras_testing.wheels import find_links_index, make_wheel


@pytest.fixture
def index_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="puras-index-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def settled(harness: Harness, ws: uuid.UUID, deployment_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = (
            await harness.http.get(f"/internal/workspaces/{ws}/deployments/{deployment_id}")
        ).json()
        return body if body["status"] != "building" else None

    return await eventually(
        done, timeout=90, interval=0.1, what=f"deployment {deployment_id} to finish building"
    )


def requirements(index: str, *lines: str) -> str:
    return "\n".join(["--no-index", f"--find-links {index}", *lines]) + "\n"


async def test_a_build_runs_once_per_distinct_file_and_is_reused(
    harness: Harness, index_dir: Path
) -> None:
    make_wheel(index_dir, "tinypkg", "1.0", "VALUE = 'from tinypkg'\n")
    ws = uuid.uuid4()
    with find_links_index(index_dir) as index:
        text = requirements(index, "tinypkg==1.0")
        first = await harness.push(ws, {**ECHO, "requirements.txt": text})
        assert first.status_code == 202, first.text
        body = first.json()
        assert (body["status"], body["active"], body["activate_when_ready"]) == (
            "building",
            False,
            True,
        )
        done = await settled(harness, ws, body["id"])
    assert done["status"] == "ready" and done["active"] is True, done
    assert "Saved ./wheelhouse/tinypkg-1.0-py3-none-any.whl" in done["build_log"]
    assert "+ tinypkg==1.0" in done["build_log"]
    assert "Built 1 wheel(s)" in done["build_log"]

    # The same file again (the index is gone): ready at once from the stored wheelhouse.
    again = await harness.push(ws, {**ECHO, "requirements.txt": text})
    assert again.status_code == 201 and again.json()["status"] == "ready" and again.json()["active"]
    assert (
        "already built"
        in (
            await harness.http.get(f"/internal/workspaces/{ws}/deployments/{again.json()['id']}")
        ).json()["build_log"]
    )
    build = await harness.db.pool.fetchrow(
        "SELECT * FROM builds WHERE requirements_sha256 = $1", done["requirements_sha256"]
    )
    assert (build["status"], build["attempts"], build["wheels"]) == ("ready", 1, 1)

    wheelhouse = await harness.http.get(
        f"/internal/builds/{done['requirements_sha256']}/wheelhouse"
    )
    assert wheelhouse.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(wheelhouse.content)) as tar:
        assert tar.getnames() == ["tinypkg-1.0-py3-none-any.whl"]
    built = [
        e["payload"]
        for e in await harness.events("deployment.built")
        if e["workspace_id"] == str(ws)
    ]
    assert [(b["deployment_id"], b["status"]) for b in built] == [(body["id"], "ready")]
    activated = [
        e["payload"]["deployment_id"]
        for e in await harness.events("deployment.activated")
        if e["workspace_id"] == str(ws)
    ]
    assert activated == [body["id"], again.json()["id"]]


async def test_an_install_failure_fails_the_deployment_with_pips_message(
    harness: Harness, index_dir: Path
) -> None:
    ws = uuid.uuid4()
    live = (await harness.push(ws, ECHO)).json()
    with find_links_index(index_dir) as index:
        pushed = await harness.push(
            ws, {**ECHO, "requirements.txt": requirements(index, "no-such-package==9.9")}
        )
        assert pushed.status_code == 202
        done = await settled(harness, ws, pushed.json()["id"])
    assert done["status"] == "failed" and done["active"] is False
    assert "pip could not install requirements.txt" in done["error"]
    assert "No matching distribution found for no-such-package==9.9" in done["error"]
    assert "no-such-package" in done["build_log"]
    url = f"/internal/workspaces/{ws}/deployments"
    refused = await harness.http.post(f"{url}/{done['id']}/activate")
    assert refused.status_code == 409 and "failed to build" in refused.json()["error"]["message"]
    assert (await harness.http.get(f"{url}/{live['id']}")).json()["active"] is True
    built = [
        e["payload"]
        for e in await harness.events("deployment.built")
        if e["workspace_id"] == str(ws)
    ]
    assert built[0]["status"] == "failed" and "no-such-package" in built[0]["error"]


async def test_a_later_activation_wins_over_a_build_that_finishes_after_it(
    harness: Harness, index_dir: Path
) -> None:
    make_wheel(index_dir, "slowpkg", "2.0", "")
    ws = uuid.uuid4()
    v1 = (await harness.push(ws, ECHO)).json()
    with find_links_index(index_dir) as index:
        building = (
            await harness.push(
                ws, {**ECHO, "requirements.txt": requirements(index, "slowpkg==2.0")}
            )
        ).json()
        assert building["status"] == "building"
        # The user rolls back to v1 while v2 builds: v2 must not take over when it is ready.
        await harness.http.post(f"/internal/workspaces/{ws}/deployments/{v1['id']}/activate")
        done = await settled(harness, ws, building["id"])
    assert done["status"] == "ready" and done["active"] is False
    assert (await harness.http.get(f"/internal/workspaces/{ws}/deployments/{v1['id']}")).json()[
        "active"
    ] is True


def has_setuptools(python: str) -> bool:
    return (
        subprocess.run([python, "-I", "-c", "import setuptools"], capture_output=True).returncode
        == 0
    )


def probe_sdist(directory: Path, *, secret: Path, hidden: Path) -> None:
    """An sdist whose setup.py reports what it can reach, then fails so pip shows its output."""
    setup = textwrap.dedent(f"""
        import os
        def attempt(label, fn):
            try:
                fn()
                print(f"PROBE {{label}}: reachable", flush=True)
            except Exception as exc:
                print(f"PROBE {{label}}: refused ({{type(exc).__name__}})", flush=True)
        attempt("secret", lambda: open({str(secret)!r}).read())
        attempt("hidden", lambda: os.listdir({str(hidden)!r}))
        def init_environ():
            text = open("/proc/1/environ").read()
            print(f"PROBE init-environ readable: {{len(text)}} bytes, platform: {{'PURAS' in text}}", flush=True)
        attempt("init-environ", init_environ)
        print("PROBE uid", os.getuid(), flush=True)
        print("PROBE env", " ".join(sorted(os.environ)), flush=True)
        import socket, urllib.error, urllib.request
        interfaces = sorted(name for _, name in socket.if_nameindex())
        print("PROBE interfaces", " ".join(interfaces), flush=True)
        if interfaces == ["lo"]:  # its own namespace: nothing tried here can leave the machine
            try:
                urllib.request.urlopen("http://169.254.169.254/latest/meta-data/", timeout=10)
            except urllib.error.HTTPError as exc:
                print("PROBE metadata:", exc.code, exc.read().decode().strip(), flush=True)
            attempt("direct-private", lambda: socket.create_connection(("10.0.0.1", 80), timeout=5))
        raise SystemExit("probe done")
    """)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in {
            "setup.py": setup,
            "PKG-INFO": "Metadata-Version: 2.1\nName: probe\nVersion: 1.0\n",
        }.items():
            data = text.encode()
            info = tarfile.TarInfo(f"probe-1.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (directory / "probe-1.0.tar.gz").write_bytes(buffer.getvalue())
    (directory / "probe-1.0.tar.gz").chmod(0o644)


async def test_the_build_runs_unprivileged_without_the_platforms_files_or_environment(
    harness: Harness, index_dir: Path, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("builds drop to the unprivileged uid only when the service is root")
    python = harness.builder.sandbox.python
    if not has_setuptools(python):
        pytest.skip(
            f"the probe sdist is built with the build interpreter's own setuptools; {python} has none"
        )
    secret = harness.data_dir / "credentials.json"
    secret.write_text('{"nats": "platform-password"}')
    secret.chmod(0o600)
    hidden = Path(tempfile.mkdtemp(prefix="puras-hidden-"))
    hidden.chmod(0o755)
    (hidden / "other-tenant.txt").write_text("not yours")
    probe_sdist(index_dir, secret=secret, hidden=hidden)
    # Build from the interpreter's own setuptools: no index to fetch a build backend from.
    harness.builder.sandbox = dataclasses.replace(
        harness.builder.sandbox, extra_env={"PIP_NO_BUILD_ISOLATION": "0"}
    )
    ws = uuid.uuid4()
    try:
        with find_links_index(index_dir) as index:
            pushed = await harness.push(
                ws, {**ECHO, "requirements.txt": requirements(index, "probe==1.0")}
            )
            done = await settled(harness, ws, pushed.json()["id"])
    finally:
        shutil.rmtree(hidden, ignore_errors=True)
    log = done["build_log"]
    assert done["status"] == "failed" and "probe done" in log, log
    assert "PROBE secret: refused" in log
    assert "platform: True" not in log
    assert "PROBE uid 65534" in log
    env_line = next(line for line in log.splitlines() if line.strip().startswith("PROBE env"))
    assert "PURAS" not in env_line and "NATS" not in env_line and "DATABASE" not in env_line
    if harness.builder.sandbox.bwrap:
        # The build's only way out is the egress proxy, which refuses metadata addresses.
        assert "PROBE interfaces lo\n" in log and "HTTPS_PROXY" in env_line
        assert "PROBE metadata: 403 puras egress refused: 169.254.169.254:80 is a cloud" in log
        assert "PROBE direct-private: refused (OSError)" in log
        assert "PROBE hidden: refused (FileNotFoundError)" in log
        assert "PROBE secret: refused (FileNotFoundError)" in log  # not even visible
    else:
        assert "PROBE secret: refused (PermissionError)" in log
        assert bwrap_available(65534, 65534) is False
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
