"""Fixtures for the puras_sandbox tests: temp dirs and started fork servers."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from puras_sandbox import ForkServer
from sandbox_testlib import IS_ROOT, NOBODY, NOBODY_PYTHON


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A fresh directory under /tmp that uid 65534 can traverse (tmp_path's parent is 0700);
    removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="puras-sbx-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="session")
async def server() -> AsyncIterator[ForkServer]:
    """A started, unsandboxed fork server running as this user with the test interpreter."""
    fs = ForkServer(python=sys.executable, sys_path=[], preload=("json",), name="test")
    await fs.start()
    try:
        yield fs
    finally:
        await fs.close()


@pytest_asyncio.fixture(loop_scope="session")
async def nobody_server() -> AsyncIterator[ForkServer]:
    """A started, unsandboxed fork server whose zygote runs as uid/gid 65534."""
    if not IS_ROOT:
        pytest.skip("dropping to uid 65534 needs root")
    if NOBODY_PYTHON is None:
        pytest.skip("no python interpreter executable by uid 65534")
    fs = ForkServer(python=NOBODY_PYTHON, sys_path=[], uid=NOBODY, gid=NOBODY, name="nobody")
    await fs.start()
    try:
        yield fs
    finally:
        await fs.close()
