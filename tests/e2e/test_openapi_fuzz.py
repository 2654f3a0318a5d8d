"""A property-based run of the gateway's OpenAPI document: schemathesis generates valid and
invalid requests for every public operation, sent with a tenant's secret key, and no answer may
be a server error. Bad input is a 4xx that says what is wrong, never a 500.

Operations whose requests make the platform fetch or deliver to a URL the request names
(webhook endpoints, a job's ``webhook_url``, media generation's attachment URLs) are left out:
generated hosts would send packets off this machine. Their inputs are covered by their own
tests. The run is seeded and bounded (a few examples per operation), so it fits in ``make test``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from puras_testing.platform import Platform

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

EXAMPLES = int(os.environ.get("PURAS_FUZZ_EXAMPLES", "8"))
"""Generated cases per operation and phase; raise it locally for a deeper run."""
SEED = int(os.environ.get("PURAS_FUZZ_SEED", "15"))
OFF_MACHINE = ("/v1/webhooks", "/v1/media")
"""Path prefixes whose requests name a URL the platform would reach out to."""
URL_FIELDS = frozenset({"webhook_url"})

PROJECT = {
    "skills/echo/skill.yaml": (
        "description: Echo.\nentrypoint: main.py:run\n"
        "input_schema: {type: object, properties: {text: {type: string, pattern: '^[a-z]+$'}}}\n"
    ),
    "skills/echo/main.py": "def run(inputs):\n    return inputs\n",
}


def _without_url_fields(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _without_url_fields(v)
            for k, v in node.items()
            if not (k in URL_FIELDS and isinstance(v, dict))
        }
    if isinstance(node, list):
        return [_without_url_fields(v) for v in node]
    return node


def fuzzable(document: dict[str, Any]) -> dict[str, Any]:
    """The document without the operations that would reach a URL a request names."""
    paths = {
        path: item for path, item in document["paths"].items() if not path.startswith(OFF_MACHINE)
    }
    trimmed: dict[str, Any] = _without_url_fields({**document, "paths": paths})
    for schema in trimmed.get("components", {}).get("schemas", {}).values():
        if isinstance(schema.get("required"), list):
            schema["required"] = [r for r in schema["required"] if r not in URL_FIELDS]
    return trimmed


async def test_no_generated_request_gets_a_server_error(platform: Platform, tmp_path: Path) -> None:
    tenant = await platform.tenant(f"fuzz-{uuid.uuid4().hex[:8]}", credit_usd="1")
    assert (await tenant.push(PROJECT)).status_code == 201
    async with httpx.AsyncClient(base_url=platform.url) as http:
        document = (await http.get("/openapi.json")).json()
    schema_file = tmp_path / "openapi.json"
    schema_file.write_text(json.dumps(fuzzable(document)))
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--no-color",
        "run",
        str(schema_file),
        "--url",
        platform.url,
        "--header",
        f"Authorization: Bearer {tenant.api_key}",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "2",
        "--request-timeout",
        "60",
        "--suppress-health-check",
        "all",
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=tmp_path,  # its cache of found crashes stays out of the work tree
    )
    output, _ = await process.communicate()
    report = output.decode(errors="replace")
    # Schedules the run made would keep firing for the rest of the session.
    for schedule in (
        (await tenant.http.get("/v1/schedules", params={"limit": 200})).json().get("data", [])
    ):
        await tenant.http.delete(f"/v1/schedules/{schedule['id']}")
    assert process.returncode == 0, report[-20_000:]
    assert "not_a_server_error" in report or "passed" in report.lower(), report[-5000:]
