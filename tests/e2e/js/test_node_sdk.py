"""The JavaScript SDK's own suite (``node --test`` in ``sdk/js``) against the running platform."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from puras_testing.platform import Platform

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_node_suite_passes(
    platform: Platform, js_tenant: dict[str, Any], js_sdk: Path
) -> None:
    tenant = js_tenant["tenant"]
    env = {
        **os.environ,
        "PURAS_API_BASE": platform.url,
        "PURAS_API_KEY": tenant.api_key,
        "PURAS_TEST_PUBLISHABLE_KEY": js_tenant["publishable_key"],
        "PURAS_TEST_WORKSPACE": tenant.slug,
    }
    node = shutil.which("node")
    assert node is not None
    proc = await asyncio.create_subprocess_exec(
        node,
        "--test",
        "--test-reporter=spec",
        "test/",
        cwd=js_sdk.parent,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    report = out.decode()
    assert proc.returncode == 0, report
    assert "# fail 0" in report or "ℹ fail 0" in report, report
    assert "skipped 0" in report and "todo 0" in report, report
