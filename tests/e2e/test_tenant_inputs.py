"""Tenant input cannot stall the platform: a schema's regular expression runs on RE2, so the
classic catastrophic-backtracking input is answered at once while other requests go on; a
pattern RE2 cannot run is refused at push with its pointer; a client's huge number is refused
before any arithmetic; and the boolean schemas are schemas like any other."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROMPT_FREE_ANSWER = 5.0
"""Generous for a loaded machine: on a backtracking engine the answer never comes (2^48 steps)."""


def code_skill(pattern: str, key_pattern: str | None = None) -> dict[str, str]:
    """A skill whose ``code`` input must match ``pattern``, as must every other input's name
    (``key_pattern``, by default the same)."""
    return {
        "skills/code/skill.yaml": (
            "description: Echo a code.\n"
            "entrypoint: main.py:run\n"
            "input_schema:\n"
            "  type: object\n"
            "  properties:\n"
            f"    code: {{type: string, pattern: '{pattern}'}}\n"
            "  patternProperties:\n"
            f"    '{key_pattern or pattern}': {{type: integer}}\n"
            "  additionalProperties: false\n"
        ),
        "skills/code/main.py": "def run(inputs):\n    return inputs\n",
    }


async def test_a_catastrophic_pattern_is_answered_at_once_while_others_are_served(
    platform: Platform,
) -> None:
    tenant = await platform.tenant(f"redos-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(code_skill("^(a+)+$"))).status_code == 201
    other = await platform.tenant(f"bystander-{uuid.uuid4().hex[:8]}")
    attack = "a" * 48 + "!"

    async def attacked(inputs: dict[str, object]) -> httpx.Response:
        return await tenant.http.post("/v1/jobs", json={"skill": "code", "inputs": inputs})

    refused, key_refused, bystander = await asyncio.wait_for(
        asyncio.gather(
            attacked({"code": attack}),
            attacked({attack: 1}),
            other.http.get("/v1/keys"),
        ),
        PROMPT_FREE_ANSWER,
    )
    assert refused.status_code == 422, refused.text
    [problem] = refused.json()["error"]["details"]
    assert problem["pointer"] == "/inputs/code" and "does not match" in problem["message"]
    assert key_refused.status_code == 422, key_refused.text
    assert attack in key_refused.json()["error"]["message"]
    assert bystander.status_code == 200
    job = await tenant.run("code", {"code": "aaaa"})
    assert job["status"] == "succeeded" and job["result"] == {"code": "aaaa"}


@pytest.mark.parametrize(
    ("pattern", "key_pattern", "pointer"),
    [
        ("^(?=a)a$", "^k", "/properties/code/pattern"),
        ("^c", "(a)\\1", "/patternProperties"),
    ],
)
async def test_a_pattern_re2_cannot_run_is_refused_at_push_with_its_pointer(
    platform: Platform, pattern: str, key_pattern: str, pointer: str
) -> None:
    tenant = await platform.tenant(f"re2-{uuid.uuid4().hex[:8]}")
    response = await tenant.push(code_skill(pattern, key_pattern))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_bundle"
    details = [d for d in error["details"] if d["field"] == "input_schema"]
    assert details and details[0]["pointer"] == pointer, error
    assert "RE2" in details[0]["message"]
    assert "skills/code/skill.yaml: input_schema" in error["message"]


async def test_boolean_schemas_are_accepted_at_push_and_enforced(platform: Platform) -> None:
    tenant: Tenant = await platform.tenant(f"boolschema-{uuid.uuid4().hex[:8]}")
    response = await tenant.push(
        {
            "skills/anything/skill.yaml": (
                "description: Takes anything.\nentrypoint: main.py:run\n"
                "input_schema: true\noutput_schema: true\n"
            ),
            "skills/anything/main.py": "def run(inputs):\n    return {'got': inputs}\n",
            "skills/nothing/skill.yaml": (
                "description: Takes nothing.\nentrypoint: main.py:run\ninput_schema: false\n"
            ),
            "skills/nothing/main.py": "def run(inputs):\n    return {}\n",
        }
    )
    assert response.status_code == 201, response.text
    skills = {s["name"]: s for s in (await tenant.http.get("/v1/skills")).json()["data"]}
    assert skills["anything"]["input_schema"] is True
    assert skills["nothing"]["input_schema"] is False
    job = await tenant.run("anything", {"x": [1, "two"]})
    assert job["status"] == "succeeded" and job["result"] == {"got": {"x": [1, "two"]}}
    refused = await tenant.http.post("/v1/jobs", json={"skill": "nothing", "inputs": {}})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["details"][0]["pointer"] == "/inputs"


@pytest.mark.parametrize(
    ("units", "needle"),
    [
        ("1e30000000", "out of range"),
        ("-1e-30000000", "out of range"),
        ("9" * 40, "significant digits"),
        ("0.0000000000000000000001", "out of range"),
    ],
)
async def test_a_huge_number_in_a_quote_is_refused_at_once(
    platform: Platform, units: str, needle: str
) -> None:
    # No key: the quote is public, so this is what anyone on the network can send.
    async with httpx.AsyncClient(base_url=platform.url, timeout=PROMPT_FREE_ANSWER) as http:
        response = await http.post(
            "/v1/pricing/quote", json={"model": "claude/sonnet-4-7", "units": units}
        )
        still_serving = await http.get("/v1/pricing")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and needle in error["message"], error
    assert error["details"][0]["pointer"] == "/units"
    assert still_serving.status_code == 200


async def test_a_huge_duration_in_a_media_quote_is_refused(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.url, timeout=PROMPT_FREE_ANSWER) as http:
        response = await http.post(
            "/v1/pricing/quote",
            json={"model": "bytedance/seedance-2-t2v", "inputs": {"duration": "1" * 60}},
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"][0]["pointer"] == "/inputs/duration"


async def test_names_that_cannot_be_a_path_segment_are_refused_before_any_relay(
    platform: Platform,
) -> None:
    tenant = await platform.tenant(f"segments-{uuid.uuid4().hex[:8]}")
    for raw in ("%08pack", "pack%1D", "..", "%C2%A3Z%2C5"):
        answered = await tenant.http.get(f"/v1/skillpacks/{raw}")
        assert answered.status_code == 404, (raw, answered.text)
        assert answered.json()["error"]["code"] == "not_found"
    for raw in ("%08NAME", "NAME.X", "A%1DB"):
        deleted = await tenant.http.delete(f"/v1/secrets/{raw}")
        assert deleted.status_code == 400, (raw, deleted.text)
        assert deleted.json()["error"]["details"][0]["pointer"] == "/name"
        put = await tenant.http.put(f"/v1/secrets/{raw}", json={"value": "v"})
        assert put.status_code == 400, (raw, put.text)
