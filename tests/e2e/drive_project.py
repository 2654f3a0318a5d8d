"""A project whose skills read and write the drive, with the standard library only: a PNG
encoder and decoder by hand, so the test needs no image package in the job's venv."""

from __future__ import annotations

import struct
import zlib
from typing import Any

THUMBNAIL_MAIN = '''
import struct
import zlib
from pathlib import Path

from puras import drive, load_bytes, load_path


def _chunks(data):
    assert data[:8] == b"\\x89PNG\\r\\n\\x1a\\n", "not a PNG"
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        yield kind, data[pos + 8:pos + 8 + length]
        pos += 12 + length


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def decode_png(data):
    """8-bit RGB, not interlaced: (width, height, rows of bytes)."""
    idat = b""
    for kind, body in _chunks(data):
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, color, interlace) == (8, 2, 0), "only 8-bit RGB PNGs"
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * 3
    rows, prev = [], bytearray(stride)
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        kind, cur = line[0], bytearray(line[1:])
        for i in range(stride):
            left = cur[i - 3] if i >= 3 else 0
            up, corner = prev[i], prev[i - 3] if i >= 3 else 0
            cur[i] = (cur[i] + (0, left, up, (left + up) // 2, _paeth(left, up, corner))[kind]) & 0xFF
        rows.append(bytes(cur))
        prev = cur
    return width, height, rows


def encode_png(width, height, rows):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    raw = b"".join(b"\\x00" + row for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def run(inputs):
    by_path = load_path(inputs["by_path"], suffix=".png")
    blobs = {
        "drive_path": by_path.read_bytes(),
        "url": load_bytes(inputs["by_url"]),
        "data": load_path(inputs["by_data"]).read_bytes(),
        "bare": load_bytes(inputs["by_path"]["drive_path"]),
    }
    sizes = {name: len(blob) for name, blob in blobs.items()}
    assert len(set(blobs.values())) == 1, f"the shapes disagree: {sizes}"
    width, height, rows = decode_png(blobs["data"])
    step = inputs.get("step", 4)
    thumb_rows = [bytes(b for x in range(0, width, step) for b in row[x * 3:x * 3 + 3]) for row in rows[::step]]
    out = f"thumbs/{Path(inputs['by_path']['drive_path']).stem}.png"
    target = Path("drive") / out
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(encode_png(len(range(0, width, step)), len(thumb_rows), thumb_rows))
    return {
        "thumb": {"drive_path": out},
        "width": len(range(0, width, step)),
        "height": len(thumb_rows),
        "sizes": sizes,
        "link": drive.url(out, ttl=60).split("?")[0],
    }
'''

PROJECT: dict[str, str] = {
    "skills/thumbnail/skill.yaml": """
        description: Read an image three ways and write a thumbnail to the drive.
        entrypoint: main.py:run
        timeout_seconds: 60
        """,
    "skills/thumbnail/main.py": THUMBNAIL_MAIN,
    "skills/writer/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 60\n",
    "skills/writer/main.py": """
        import time
        from pathlib import Path

        def run(inputs):
            folder = Path("drive") / inputs["folder"]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{inputs['name']}-first.txt").write_text(inputs["name"])
            time.sleep(inputs.get("pause", 0))
            (folder / f"{inputs['name']}-second.txt").write_text(inputs["name"])
            return {"wrote": inputs["name"]}
        """,
    "skills/scribble/skill.yaml": "entrypoint: main.py:run\n",
    "skills/scribble/main.py": """
        import os
        import shutil
        from pathlib import Path

        def run(inputs):
            root = Path("drive")
            for name, text in inputs.get("files", {}).items():
                target = root / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            for name, to in inputs.get("links", {}).items():
                os.symlink(to, root / name)
            for name in inputs.get("remove", []):
                target = root / name
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink()
            for name, text in inputs.get("then", {}).items():
                target = root / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            for name in inputs.get("fifos", []):  # relative to the workdir
                fifo = Path(name)
                fifo.parent.mkdir(parents=True, exist_ok=True)
                if fifo.exists():
                    fifo.unlink()
                os.mkfifo(fifo)
            seen = {}
            for name in inputs.get("read", []):
                try:
                    seen[name] = (root / name).read_text()
                except OSError as exc:
                    seen[name] = type(exc).__name__
            loaded = {}
            for name in inputs.get("load", []):
                from puras import load_bytes

                loaded[name] = load_bytes(name).decode()
            if inputs.get("fail"):
                raise RuntimeError("failed after writing")
            return {"seen": seen, "loaded": loaded}
        """,
}


async def fifo_then_another_job(tenant: Any, get_origin: Any) -> None:
    """A job puts FIFOs where the runner reads (its fetched-files list, a drive file): it ends
    normally, its regular file is saved, and the runner goes on to the next job."""
    job = await tenant.run(
        "scribble",
        {
            "files": {"fifo/after.txt": "saved"},
            "fifos": [".puras-drive-fetched", "drive/fifo/pipe.txt"],
        },
        timeout=60,
    )
    assert job["status"] == "succeeded", (job["status"], job["error"])
    assert await get_origin("fifo/after.txt") == job["id"]
    listing = (await tenant.http.get("/v1/drive/list", params={"prefix": "fifo/"})).json()
    assert [f["path"] for f in listing["files"]] == ["fifo/after.txt"]
    following = await tenant.run("scribble", {"files": {"fifo/next.txt": "next"}})
    assert following["status"] == "succeeded", following["error"]


def png(width: int, height: int) -> bytes:
    """A deterministic RGB gradient."""
    rows = [
        bytes(b for x in range(width) for b in ((x * 7) % 256, (y * 11) % 256, (x + y) % 256))
        for y in range(height)
    ]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    raw = b"".join(b"\x00" + row for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def pixel(data: bytes, x: int, y: int) -> tuple[int, int, int]:
    """One pixel of a filter-0 RGB PNG made by :func:`png` or the skill."""
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width = struct.unpack(">I", body[:4])[0]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    start = y * (width * 3 + 1) + 1 + x * 3
    r, g, b = raw[start : start + 3]
    return r, g, b
