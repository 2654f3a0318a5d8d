"""Test support for requirements.txt builds without the internet: a wheel made on the spot and
a local find-links index serving it over HTTP, the way a private index would."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Final

from puras_cli.engines import free_port


def make_wheel(directory: Path, name: str, version: str, code: str) -> Path:
    """A pure-Python wheel of one module ``name`` holding ``code``."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": code.encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: puras-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    wheel.chmod(0o644)
    return wheel


class _Quiet(http.server.SimpleHTTPRequestHandler):
    gate: threading.Event | None = None

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.gate is not None:
            self.gate.wait(timeout=120)
        super().do_GET()


INDEX_PORT: Final = free_port()
"""The loopback port :func:`find_links_index` serves on: builds reach the outside through the
egress proxy, so tests name it in ``PURAS_DEPLOYMENTS_EGRESS_TEST_ALLOW``."""


@contextlib.contextmanager
def find_links_index(
    directory: Path, *, gate: threading.Event | None = None, port: int = INDEX_PORT
) -> Iterator[str]:
    """Serve ``directory`` over HTTP on loopback (on :data:`INDEX_PORT` unless told another);
    yields its URL (for ``--find-links``). With ``gate``, every request waits until the gate is
    set (a build that takes as long as the test wants)."""
    handler = type("_Gated", (_Quiet,), {"gate": gate})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), partial(handler, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.shutdown()
        server.server_close()
