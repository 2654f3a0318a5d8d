"""The JavaScript SDK, built once per session from ``sdk/js`` (``npm ci`` when its dev
dependencies are missing or older than the lock file, then ``tsc``), for the Node suite and the
browser test. Node and npm are required: their absence fails these tests, it never skips them."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from puras_testing.platform import CHATTY_PROJECT, ECHO_PROJECT, Platform, Tenant

SDK = Path(__file__).resolve().parents[3] / "sdk" / "js"

ASK_PROJECT = {
    "skills/ask/skill.yaml": "entrypoint: main.py:run\n",
    "skills/ask/main.py": (
        "import puras\n\n"
        "def run(inputs):\n"
        "    name = puras.request_input('Your name?', {'type': 'string', 'minLength': 2})\n"
        "    return {'hello': name}\n"
    ),
}
PROJECT = {**ECHO_PROJECT, **CHATTY_PROJECT, **ASK_PROJECT}


def which(version: int) -> dict[str, str]:
    return {
        "skills/which/skill.yaml": "entrypoint: main.py:run\n",
        "skills/which/main.py": f"def run(inputs):\n    return {{'version': {version}}}\n",
    }


def _run(*args: str) -> None:
    done = subprocess.run(args, cwd=SDK, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="session")
def js_sdk() -> Path:
    """``sdk/js/dist``, freshly built."""
    npm = shutil.which("npm")
    assert npm and shutil.which("node"), "node and npm are needed to build and test sdk/js"
    installed = SDK / "node_modules" / ".package-lock.json"
    lock = SDK / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        _run(npm, "ci", "--no-audit", "--no-fund")
    _run(npm, "run", "build")
    return SDK / "dist"


@pytest.fixture(scope="session")
async def js_tenant(platform: Platform) -> dict[str, Any]:
    """A workspace that the Node suite and the browser test share: the project above as
    versions 1 and 2 of ``default``, a skillpack ``extra``, and a publishable key that may run
    ``echo`` and ``chatty``."""
    tenant: Tenant = await platform.tenant(f"js-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push({**PROJECT, **which(1)})).status_code == 201
    assert (await tenant.push({**PROJECT, **which(2)})).status_code == 201
    extra = {
        "skills/hello/skill.yaml": "entrypoint: main.py:run\n",
        "skills/hello/main.py": "def run(inputs):\n    return {'pack': 'extra'}\n",
    }
    assert (await tenant.push(extra, skillpack="extra")).status_code == 201
    minted = await tenant.http.post(
        "/v1/keys", json={"kind": "publishable", "allowed_skills": ["echo", "chatty"]}
    )
    assert minted.status_code == 201, minted.text
    return {"tenant": tenant, "publishable_key": minted.json()["api_key"]}
