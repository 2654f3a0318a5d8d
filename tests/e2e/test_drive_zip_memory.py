"""The zip endpoint streams: a 200 MB prefix goes out as one archive while the drive's and the
gateway's peak memory stay flat (each holds a chunk at a time, never the archive)."""

from __future__ import annotations

import os
import tempfile
import uuid
import zipfile
from pathlib import Path

import pytest
from puras_testing.platform import Platform

pytestmark = pytest.mark.asyncio(loop_scope="session")

MB = 1024 * 1024
FILES = 4
FILE_BYTES = 50 * MB
FLAT_LIMIT = 40 * MB
"""Growth of peak resident memory allowed while 200 MB streams through (a few chunks' worth)."""


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def reset_peak(pid: int) -> None:
    """Linux ≥ 4.0: writing 5 to clear_refs resets the peak RSS to the current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@pytest.mark.slow
async def test_a_200_mb_prefix_zips_with_flat_memory(platform: Platform) -> None:
    tenant = await platform.tenant(f"zip-{uuid.uuid4().hex[:6]}")
    block = os.urandom(MB)
    for i in range(FILES):
        response = await tenant.http.post(
            "/v1/drive/upload",
            files={
                "file": (f"part{i}.bin", block * (FILE_BYTES // MB), "application/octet-stream")
            },
            data={"path": f"big/videos/part{i}.bin"},
            timeout=120,
        )
        assert response.status_code == 201, response.text

    pids = {name: platform.supervisor.pid(name) for name in ("drive", "gateway")}
    assert all(pids.values()), pids
    for pid in pids.values():
        reset_peak(pid)  # type: ignore[arg-type]
    before = {name: peak_rss(pid) for name, pid in pids.items()}  # type: ignore[arg-type]

    with tempfile.NamedTemporaryFile(suffix=".zip") as out:
        received = 0
        async with tenant.http.stream(
            "GET", "/v1/drive/zip", params={"prefix": "big/videos"}, timeout=300
        ) as response:
            assert response.status_code == 200
            assert (
                "content-length" not in response.headers
            )  # streamed, not buffered to learn its size
            async for chunk in response.aiter_raw():
                received += len(chunk)
                out.write(chunk)
        out.flush()
        after = {name: peak_rss(pid) for name, pid in pids.items()}  # type: ignore[arg-type]
        assert received > FILES * FILE_BYTES
        archive = zipfile.ZipFile(out.name)
        assert sorted(archive.namelist()) == [f"videos/part{i}.bin" for i in range(FILES)]
        assert archive.testzip() is None
        with archive.open("videos/part3.bin") as member:
            assert member.read(MB) == block

    growth = {name: after[name] - before[name] for name in pids}
    print(
        f"zip of {received / MB:.1f} MiB: peak RSS growth { ({k: f'{v / MB:.1f} MiB' for k, v in growth.items()}) }"
    )
    for name, grew in growth.items():
        assert grew < FLAT_LIMIT, (
            f"{name} peak memory grew {grew / MB:.1f} MiB while streaming {received / MB:.0f} MiB"
        )
