"""Bundles and wheelhouses in an S3-compatible store (moto's server): what one replica of the
deployments service received or built, another replica, with a local directory of its own,
serves."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from puras_deployments.mirror import S3Mirror
from puras_deployments.store import BundleStore
from puras_testing.drive import MotoS3, start_moto

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3]:
    with start_moto() as server:
        saved = {k: os.environ.get(k) for k in server.env()}
        os.environ.update(server.env())
        try:
            yield server
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest_asyncio.fixture(loop_scope="session")
async def replicas(moto: MotoS3) -> AsyncIterator[tuple[BundleStore, BundleStore]]:
    mirrors = [
        S3Mirror(bucket="bundles-test", endpoint=moto.endpoint, region="us-east-1")
        for _ in range(2)
    ]
    for mirror in mirrors:
        await mirror.start()
    roots = [Path(tempfile.mkdtemp(prefix="puras-bundles-")) for _ in mirrors]
    try:
        yield tuple(BundleStore(r, mirror=m) for r, m in zip(roots, mirrors, strict=True))  # type: ignore[misc]
    finally:
        for mirror in mirrors:
            await mirror.close()
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_a_bundle_kept_by_one_replica_is_served_by_another(
    replicas: tuple[BundleStore, BundleStore],
) -> None:
    first, second = replicas
    data = b"PK\x05\x06" + os.urandom(64)
    received = await first.receive(chunks(data), limit=1024)
    await first.keep(received)
    assert not second.path(received.sha256).exists()
    served = await second.bundle(received.sha256)
    assert served.read_bytes() == data and hashlib.sha256(data).hexdigest() == received.sha256
    missing = await second.bundle("0" * 64)
    assert not missing.exists()


async def test_a_wheelhouse_built_on_one_replica_is_found_by_another(
    replicas: tuple[BundleStore, BundleStore],
) -> None:
    first, second = replicas
    sha = hashlib.sha256(os.urandom(8)).hexdigest()
    assert await second.built_wheelhouse(sha) is None
    first.wheelhouse(sha).write_bytes(b"wheels")
    await first.share_wheelhouse(sha)
    found = await second.built_wheelhouse(sha)
    assert found is not None and found.read_bytes() == b"wheels"
    # Shared again by a replica that built the same file: the same key, nothing breaks.
    await second.share_wheelhouse(sha)


async def test_without_a_mirror_a_replica_sees_only_its_own_directory() -> None:
    root = Path(tempfile.mkdtemp(prefix="puras-bundles-"))
    try:
        alone = BundleStore(root)
        assert await alone.built_wheelhouse("1" * 64) is None
        assert not (await alone.bundle("1" * 64)).exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)
