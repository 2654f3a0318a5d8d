"""One contract, bound to both storage backends: local disk and S3 (moto's server mode)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from puras_drive.storage import Backend, NotFound, TooLarge, open_backend
from puras_testing.drive import MotoS3


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read_all(backend: Backend, key: str, **kwargs: int) -> bytes:
    return b"".join([chunk async for chunk in backend.read(key, **kwargs)])


@pytest_asyncio.fixture(params=["local", "s3"], loop_scope="session")
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "s3":
        server: MotoS3 = request.getfixturevalue("s3_env")
        store = open_backend(
            "s3",
            data_dir=tmp_path,
            s3_endpoint=server.endpoint,
            s3_bucket=f"t-{uuid.uuid4().hex[:12]}",
        )
    else:
        store = open_backend("local", data_dir=tmp_path / "drive")
    await store.start()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def ws() -> str:
    return str(uuid.uuid4())


async def test_a_write_reads_back_byte_for_byte(backend: Backend, ws: str) -> None:
    data = os.urandom(700_000)
    stored = await backend.write(
        f"{ws}/a/b.bin", chunks(data[:1000], data[1000:]), content_type="image/png"
    )
    assert stored.bytes == len(data) and stored.key == f"{ws}/a/b.bin"
    assert await read_all(backend, f"{ws}/a/b.bin") == data
    again = await backend.stat(f"{ws}/a/b.bin")
    assert again is not None and again.bytes == len(data)
    assert again.content_type in ("image/png", None)  # local disk keeps no content type


async def test_ranges_read_only_the_bytes_asked_for(backend: Backend, ws: str) -> None:
    await backend.write(f"{ws}/r.txt", chunks(b"0123456789"), content_type="text/plain")
    assert await read_all(backend, f"{ws}/r.txt", start=2, end=5) == b"234"
    assert await read_all(backend, f"{ws}/r.txt", start=7) == b"789"


async def test_an_empty_file_and_unicode_names_are_files_like_any_other(
    backend: Backend, ws: str
) -> None:
    await backend.write(f"{ws}/vide/été.txt", chunks(), content_type="text/plain")
    listing = await backend.children(f"{ws}/vide/")
    assert [(f.key, f.bytes) for f in listing.files] == [(f"{ws}/vide/été.txt", 0)]
    assert await read_all(backend, f"{ws}/vide/été.txt") == b""


async def test_exactly_the_limit_passes_and_one_byte_more_stores_nothing(
    backend: Backend, ws: str
) -> None:
    limit = 1024
    ok = await backend.write(
        f"{ws}/edge.bin", chunks(b"x" * 1000, b"y" * 24), content_type="x/y", limit=limit
    )
    assert ok.bytes == limit
    with pytest.raises(TooLarge) as caught:
        await backend.write(
            f"{ws}/over.bin", chunks(b"x" * 1000, b"y" * 25), content_type="x/y", limit=limit
        )
    assert "1024 bytes" in caught.value.message
    assert await backend.stat(f"{ws}/over.bin") is None
    assert [o.key async for o in backend.walk(f"{ws}/")] == [f"{ws}/edge.bin"]


async def test_a_failed_overwrite_keeps_the_old_file(backend: Backend, ws: str) -> None:
    await backend.write(f"{ws}/keep.txt", chunks(b"old"), content_type="text/plain")
    with pytest.raises(TooLarge):
        await backend.write(
            f"{ws}/keep.txt", chunks(b"new and too long"), content_type="text/plain", limit=5
        )
    assert await read_all(backend, f"{ws}/keep.txt") == b"old"
    await backend.write(f"{ws}/keep.txt", chunks(b"new"), content_type="text/plain")
    assert await read_all(backend, f"{ws}/keep.txt") == b"new"


async def test_missing_files_are_not_found(backend: Backend, ws: str) -> None:
    assert await backend.stat(f"{ws}/nope.txt") is None
    with pytest.raises(NotFound):
        await read_all(backend, f"{ws}/nope.txt")
    with pytest.raises(NotFound):
        await read_all(backend, f"{ws}/nofolder/nope.txt")


async def test_children_are_direct_folders_and_files_only(backend: Backend, ws: str) -> None:
    for key in ("top.txt", "a/one.txt", "a/deep/two.txt", "b/three.txt"):
        await backend.write(f"{ws}/{key}", chunks(b"."), content_type="text/plain")
    root = await backend.children(f"{ws}/")
    assert sorted(root.folders) == ["a", "b"]
    assert [f.key for f in root.files] == [f"{ws}/top.txt"]
    inner = await backend.children(f"{ws}/a/")
    assert inner.folders == ["deep"] and [f.key for f in inner.files] == [f"{ws}/a/one.txt"]
    assert (await backend.children(f"{ws}/missing/")).files == []


async def test_walk_covers_a_prefix_and_nothing_beside_it(backend: Backend, ws: str) -> None:
    for key in ("a/1", "a/x/2", "ab/3", "b/4"):
        await backend.write(f"{ws}/{key}", chunks(b"."), content_type="text/plain")
    assert sorted([o.key async for o in backend.walk(f"{ws}/a/")]) == [f"{ws}/a/1", f"{ws}/a/x/2"]
    assert len([o async for o in backend.walk(f"{ws}/")]) == 4


async def test_workspaces_do_not_see_each_other(backend: Backend, ws: str) -> None:
    other = str(uuid.uuid4())
    await backend.write(f"{other}/secret.txt", chunks(b"theirs"), content_type="text/plain")
    await backend.write(f"{ws}/mine.txt", chunks(b"mine"), content_type="text/plain")
    assert [o.key async for o in backend.walk(f"{ws}/")] == [f"{ws}/mine.txt"]
    assert [f.key for f in (await backend.children(f"{ws}/")).files] == [f"{ws}/mine.txt"]


async def test_delete_removes_files_and_leaves_no_empty_folder(backend: Backend, ws: str) -> None:
    await backend.write(f"{ws}/d/x/1.txt", chunks(b"1"), content_type="text/plain")
    await backend.write(f"{ws}/d/2.txt", chunks(b"2"), content_type="text/plain")
    await backend.write(f"{ws}/keep.txt", chunks(b"k"), content_type="text/plain")
    await backend.delete([f"{ws}/d/x/1.txt", f"{ws}/d/2.txt", f"{ws}/d/never.txt"])
    assert await backend.stat(f"{ws}/d/2.txt") is None
    root = await backend.children(f"{ws}/")
    assert root.folders == [] and [f.key for f in root.files] == [f"{ws}/keep.txt"]


async def test_put_file_moves_a_spooled_file_into_place(backend: Backend, ws: str) -> None:
    spool = backend.temp_path()
    spool.parent.mkdir(parents=True, exist_ok=True)
    spool.write_bytes(b"spooled")
    stored = await backend.put_file(f"{ws}/in/place.txt", spool, content_type="text/plain")
    assert stored.bytes == 7 and not spool.exists()
    assert await read_all(backend, f"{ws}/in/place.txt") == b"spooled"
