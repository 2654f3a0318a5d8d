"""Test support: the corpus of hostile drive paths, and an S3-protocol server (moto's server
mode) on a free loopback port.

Used by the drive's contract suite and by cross-service tests that run the platform on the S3
backend. moto is a development dependency; importing this module without it fails clearly.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from puras_cli.engines import free_port

HOSTILE_PATHS: tuple[str, ...] = (
    # Each must be refused, or name something inside the caller's workspace.
    "../secret.txt",
    "..",
    "a/../../b",
    "a/../b",
    "uploads/../../etc/passwd",
    "/etc/passwd",
    "//etc/passwd",
    "\\etc\\passwd",
    "..\\..\\windows\\win.ini",
    "a\\..\\b",
    "C:\\Windows\\system.ini",
    "C:/Windows/system.ini",
    "a/b\x00.png",
    "\x00",
    "a/\nb",
    "a\rb",
    "a\x7fb",
    "%2e%2e/secret",
    "..%2fsecret",
    "%2e%2e%2f%2e%2e%2fetc",
    "a/%2E%2E/b",
    "%252e%252e/secret",
    "%00",
    "%5c..%5csecret",
    "．．/secret",  # fullwidth full stops fold to "."
    "..／secret",  # fullwidth solidus folds to "/"
    "a∕..∕b",  # division slash: no fold, so an odd but harmless file name
    "\u2024\u2024/secret",  # one-dot leaders fold to "."
    "a/\ufe52\ufe52/b",  # small full stops fold to "."
    "a\uff3cb",  # fullwidth reverse solidus folds to "\\"
    "a/\u202e/b",  # right-to-left override
    "\u200b../x",  # zero-width space before the dots
    "~/secret",
    "~root/.ssh/id_rsa",
    "...",
    ". /x",
    "a/ . /b",
    "x" * 256,
    "a/" * 600 + "b",
    "",
    "/",
    ".",
    "./",
)

SAFE_FOLDS = frozenset({"a∕..∕b"})
"""Corpus entries that are odd but harmless names: U+2215 has no compatibility fold."""


@dataclass(frozen=True)
class MotoS3:
    endpoint: str

    def env(self) -> dict[str, str]:
        """What a process needs to reach this server with the AWS SDK."""
        return {
            "AWS_ACCESS_KEY_ID": "puras-test",
            "AWS_SECRET_ACCESS_KEY": "puras-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PURAS_DRIVE_S3_ENDPOINT": self.endpoint,
        }


@contextlib.contextmanager
def start_moto() -> Iterator[MotoS3]:
    """moto's S3 in server mode, in a thread of this process, until the block ends."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield MotoS3(endpoint=f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@dataclass(frozen=True)
class RunningDrive:
    url: str
    """The internal listener (``PURAS_DRIVE_URL``)."""
    data_dir: str
    token: str


@contextlib.asynccontextmanager
async def run_drive(env: dict[str, str], *, data_dir: str) -> AsyncIterator[RunningDrive]:
    """The drive service as its own process (``python -m puras_drive``) on a free port, for a
    component's tests that need real storage, origins and signed links; ``env`` is the service's
    environment (NATS, database, tokens: ``Infra.service_env("drive")``)."""
    import asyncio
    import os
    import sys

    import httpx

    port = free_port()
    full = {
        **os.environ,
        **env,
        "PURAS_DRIVE_PORT": str(port),
        "PURAS_DRIVE_DATA_DIR": data_dir,
        "PURAS_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "puras_drive", env=full)
    url = f"http://127.0.0.1:{port}"
    token = full.get("PURAS_INTERNAL_TOKEN", "")
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(600):
                if process.returncode is not None:
                    raise RuntimeError(
                        f"the drive exited with {process.returncode} before it was ready"
                    )
                try:
                    answer = await http.get(
                        f"{url}/internal/drive/00000000-0000-0000-0000-000000000000/mount",
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=1.0,
                    )
                    if answer.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)  # readiness of a process we just started, not a test wait
            else:
                raise TimeoutError("the drive did not start within 30 s")
        yield RunningDrive(url, data_dir, token)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
