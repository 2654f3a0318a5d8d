"""Tenancy, route by route: the gateway's whole route table is walked, so a new route cannot slip
through untested.

* With no key and with a wrong key, every route answers 401, 403 or 404, unless it is in
  :data:`PUBLIC`, named here on purpose.
* With another workspace's credentials (a secret key, a person signed in, a publishable key, a
  job token), every route is tried against every kind of resource of this workspace: its ids
  in the path, and its skillpack, files and workspace in the query. A route that names one of
  this workspace's resources answers 404 (403 where the credential may not use the route at
  all); no answer holds anything of this workspace; and afterwards everything this workspace
  has reads exactly as before.
* A publishable key reaches only the jobs it submitted: the other jobs of its own workspace
  are 404 on every job route.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
import pytest_asyncio
from puras_common.tokens import mint_job_token
from puras_gateway.app import create_app
from puras_gateway.context import Gateway
from puras_gateway.settings import GatewaySettings
from puras_testing import eventually
from puras_testing.platform import ECHO_PROJECT, Person, Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

PUBLIC: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/openapi.json"),
        ("HEAD", "/openapi.json"),
        ("GET", "/healthz"),
        ("GET", "/docs"),
        ("GET", "/v1/pricing"),
        ("POST", "/v1/pricing/quote"),
        # Signing in: the credentials are in the body.
        ("POST", "/v1/auth/login"),
        ("POST", "/v1/auth/token"),
        ("POST", "/v1/auth/invitations/lookup"),
        ("POST", "/v1/auth/invitations/accept"),
        # The console's pages are one static shell; its data comes from the API with a session.
        ("GET", "/console"),
        ("GET", "/console/"),
        ("GET", "/console/login"),
        ("GET", "/console/invite"),
        ("GET", "/console/{workspace}"),
        ("GET", "/console/{workspace}/jobs/{job_id}"),
        ("GET", "/console/{workspace}/{page}"),
        ("GET", "/admin/ops"),
        # A signed link: the signature is the credential (tested in test_served_files.py).
        ("GET", "/v1/drive/files/{workspace_id}/{path:path}"),
    }
)
"""Routes that answer without a credential, deliberately."""

REFUSED = frozenset({401, 403, 404})
WRONG_KEY = "puras_live_AAAAAAAA." + "B" * 32


def route_table() -> list[tuple[str, str]]:
    """``(method, path template)`` of every route the gateway's app serves."""
    app = create_app(cast(Gateway, SimpleNamespace(settings=GatewaySettings())))
    table: list[tuple[str, str]] = []

    def add(route: Any) -> None:
        if hasattr(route, "effective_route_contexts"):  # an included router
            for context in route.effective_route_contexts():
                table.extend((m, context.path) for m in sorted(context.methods))
        elif getattr(route, "methods", None):
            table.extend((m, route.path) for m in sorted(route.methods))

    for route in app.routes:
        add(route)
    return table


@dataclass
class Victim:
    """A workspace with one of every kind of resource, and what identifies them."""

    tenant: Tenant
    person: Person
    ids: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    """Strings that only this workspace's data holds: none may appear in another's answer."""

    def path_values(self) -> dict[str, str]:
        return {
            "job_id": self.ids["job"],
            "deployment_id": self.ids["deployment"],
            "skillpack:path": self.ids["skillpack"],
            "name": "API_TOKEN",
            "key_id": self.ids["key"],
            "webhook_id": self.ids["webhook"],
            "delivery_id": self.ids["delivery"],
            "schedule_id": self.ids["schedule"],
            "user_id": self.ids["user"],
            "invitation_id": self.ids["invitation"],
            "slug": self.tenant.slug,
            "workspace_id": self.tenant.id,
            "path:path": "private/plans.txt",
            "workspace": self.tenant.slug,
            "page": "jobs",
        }

    def query(self) -> dict[str, str]:
        """Query parameters that name this workspace's things, added to every request."""
        return {
            "skillpack": f"{self.tenant.slug}/default",
            "path": f"{self.tenant.id}/private/plans.txt",
            "prefix": f"{self.tenant.id}/private/",
            "job_id": self.ids["job"],
            "parent": self.ids["job"],
            "key": self.ids["key"],
        }

    def body(self, method: str, template: str) -> dict[str, Any]:
        """A well-formed body for routes that take one, naming this workspace's things."""
        skill = f"{self.tenant.slug}/default/echo"
        bodies: dict[tuple[str, str], dict[str, Any]] = {
            ("POST", "/v1/jobs"): {"skill": skill, "inputs": {"text": "x"}},
            ("POST", "/v1/jobs/{job_id}/feedback"): {"rating": -1, "comment": "pwned"},
            ("PUT", "/v1/secrets/{name}"): {"value": "overwritten"},
            ("PATCH", "/v1/skillpacks/{skillpack:path}"): {"visibility": "public"},
            ("POST", "/v1/schedules"): {
                "skill": skill,
                "inputs": {"text": "x"},
                "cron": "*/5 * * * *",
                "paused": True,
            },
            ("PATCH", "/v1/schedules/{schedule_id}"): {"name": "pwned"},
            ("PATCH", "/v1/webhooks/{webhook_id}"): {"enabled": False},
            ("PATCH", "/v1/members/{user_id}"): {"role": "member"},
            ("POST", "/v1/subagents"): {"target": skill, "inputs": {"text": "x"}},
        }
        return bodies.get((method, template), {})


def fill(template: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"no value for path parameter {{{name}}} of {template}: add one"
        return values[name]

    return re.sub(r"\{([^}]+)\}", one, template)


async def snapshot(victim: Victim) -> dict[str, Any]:
    """Everything the victim workspace holds, as its owner reads it (volatile fields dropped)."""
    http, ids = victim.tenant.http, victim.ids
    reads = {
        "job": f"/v1/jobs/{ids['job']}",
        "events": f"/v1/jobs/{ids['job']}/events",
        "usage": f"/v1/jobs/{ids['job']}/usage",
        "feedback": f"/v1/jobs/{ids['job']}/feedback",
        "jobs": "/v1/jobs?limit=200",
        "deployments": "/v1/deployments",
        "deployment": f"/v1/deployments/{ids['deployment']}",
        "skillpacks": "/v1/skillpacks",
        "keys": "/v1/keys?limit=200",
        "secrets": "/v1/secrets",
        "drive": "/v1/drive/list?prefix=private/",
        "webhooks": "/v1/webhooks",
        "schedules": "/v1/schedules",
        "schedule": f"/v1/schedules/{ids['schedule']}",
        "balance": "/v1/balance",
        "usage_all": "/v1/usage",
        "skills": "/v1/skills",
    }
    state: dict[str, Any] = {}
    for name, url in reads.items():
        response = await http.get(url)
        assert response.status_code == 200, (url, response.text)
        state[name] = _stable(response.json())
    members = await victim.person.http.get("/v1/members")
    invitations = await victim.person.http.get("/v1/members/invitations")
    state["members"] = _stable(members.json())
    state["invitations"] = _stable(invitations.json())
    signed = await http.get("/v1/drive/sign", params={"path": "private/plans.txt"})
    async with httpx.AsyncClient() as anonymous:
        state["file"] = (await anonymous.get(signed.json()["signed_url"])).content
    return state


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _stable(v)
            for k, v in value.items()
            if k not in ("signed_url", "last_used_at", "spent_today_micros")
        }
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def victim(platform: Platform) -> Victim:
    tenant = await platform.tenant(f"victim-{uuid.uuid4().hex[:8]}")
    email = f"owner-{uuid.uuid4().hex[:8]}@victim.example"
    user = await platform.add_user(tenant.slug, email)
    person = await platform.sign_in(email)
    pushed = await tenant.push(ECHO_PROJECT)
    assert pushed.status_code == 201, pushed.text
    job = await tenant.run("echo", {"text": "the victim's words"})
    http = tenant.http
    assert (
        await http.post(f"/v1/jobs/{job['id']}/feedback", json={"rating": 1, "comment": "kept"})
    ).status_code == 200
    assert (await http.put("/v1/secrets/API_TOKEN", json={"value": "s3cr3t"})).status_code in (
        200,
        201,
    )
    key = (await http.post("/v1/keys", json={"name": "victim's second key"})).json()
    uploaded = await http.post(
        "/v1/drive/upload",
        files=[
            ("file", ("plans.txt", b"the victim's plans", "text/plain")),
            ("path", (None, "private/plans.txt")),
        ],
    )
    assert uploaded.status_code == 201, uploaded.text
    webhook = await http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"})
    assert webhook.status_code == 201, webhook.text
    schedule = await http.post(
        "/v1/schedules",
        json={"skill": "echo", "inputs": {"text": "t"}, "cron": "0 0 1 1 *", "paused": True},
    )
    assert schedule.status_code == 201, schedule.text
    invitation = await person.http.post(
        "/v1/members/invitations", json={"email": f"new-{uuid.uuid4().hex[:6]}@victim.example"}
    )
    assert invitation.status_code == 201, invitation.text
    skillpacks = (await http.get("/v1/skillpacks")).json()
    ids = {
        "job": job["id"],
        "deployment": pushed.json()["id"],
        "skillpack": next(p["id"] for p in skillpacks["data"] if p["slug"] == "default"),
        "key": key["id"],
        "webhook": webhook.json()["id"],
        "delivery": str(uuid.uuid4()),
        "schedule": schedule.json()["id"],
        "user": user["user_id"],
        "invitation": invitation.json()["id"],
    }
    secrets = [
        *(v for k, v in ids.items() if k != "delivery"),
        "the victim's words",
        "the victim's plans",
        "s3cr3t",
        email,
        webhook.json()["secret"],
    ]
    return Victim(tenant, person, ids, secrets)


@dataclass
class Attacker:
    name: str
    http: httpx.AsyncClient
    own_workspace: str | None = None
    """A person's own workspace slug (a session names the workspace it acts in)."""


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def attackers(platform: Platform) -> AsyncIterator[list[Attacker]]:
    tenant = await platform.tenant(f"attacker-{uuid.uuid4().hex[:8]}")
    assert (await tenant.push(NAPPING)).status_code == 201
    # A job token is only good while its job runs: this one naps until the module is done.
    own_job = (await tenant.http.post("/v1/jobs", json={"skill": "nap", "inputs": {}})).json()

    async def started() -> dict[str, Any] | None:
        job: dict[str, Any] = (await tenant.http.get(f"/v1/jobs/{own_job['id']}")).json()
        return job if job["status"] == "running" else None

    running: dict[str, Any] = await eventually(
        started, timeout=60, what="the attacker's job to start"
    )
    email = f"owner-{uuid.uuid4().hex[:8]}@attacker.example"
    await platform.add_user(tenant.slug, email)
    person = await platform.sign_in(email)
    publishable = (await tenant.http.post("/v1/keys", json={"kind": "publishable"})).json()
    skillpacks = (await tenant.http.get("/v1/skillpacks")).json()["data"]
    token = mint_job_token(
        platform.config.credentials.job_token_key,
        workspace_id=uuid.UUID(tenant.id),
        job_id=uuid.UUID(running["id"]),
        skillpack_id=uuid.UUID(skillpacks[0]["id"]),
        attempt=running["attempt"],
        ttl_seconds=3600,
    )

    def bearer(credential: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=platform.url, headers={"Authorization": f"Bearer {credential}"}, timeout=60
        )

    made = [
        Attacker("secret key", tenant.http),
        Attacker("person", person.http, own_workspace=tenant.slug),
        Attacker("publishable key", bearer(publishable["api_key"])),
        Attacker("job token", bearer(token)),
    ]
    yield made
    await tenant.http.post(f"/v1/jobs/{own_job['id']}/cancel")
    for attacker in made[2:]:
        await attacker.http.aclose()


NAPPING = {
    **ECHO_PROJECT,
    "skills/nap/skill.yaml": "entrypoint: main.py:run\ntimeout_seconds: 600\n",
    "skills/nap/main.py": "import time\n\ndef run(inputs):\n    time.sleep(600)\n    return {}\n",
}


def routes_to_try() -> Iterator[tuple[str, str]]:
    for method, template in route_table():
        if method == "HEAD":
            continue
        yield method, template


async def call(
    http: httpx.AsyncClient,
    method: str,
    template: str,
    victim: Victim,
    *,
    workspace: str | None = None,
) -> httpx.Response:
    url = fill(template, victim.path_values())
    params = {**victim.query(), "workspace": workspace or victim.tenant.slug}
    body = victim.body(method, template)
    if method in ("GET", "DELETE"):
        return await http.request(method, url, params=params, follow_redirects=False)
    return await http.request(method, url, params=params, json=body, follow_redirects=False)


def leaks(victim: Victim, response: httpx.Response) -> list[str]:
    """What of the victim's an answer shows that its request did not itself name."""
    sent = str(response.request.url) + response.request.content.decode(errors="replace")
    return [s for s in victim.secrets if s in response.text and s not in sent]


async def test_the_public_set_names_only_routes_that_exist() -> None:
    assert PUBLIC <= set(route_table()), PUBLIC - set(route_table())


async def test_every_route_refuses_no_key_and_a_wrong_key(
    platform: Platform, victim: Victim
) -> None:
    before = await snapshot(victim)
    answered: list[str] = []
    async with (
        httpx.AsyncClient(base_url=platform.url, timeout=60) as anonymous,
        httpx.AsyncClient(
            base_url=platform.url, headers={"Authorization": f"Bearer {WRONG_KEY}"}, timeout=60
        ) as wrong,
    ):
        for method, template in routes_to_try():
            if (method, template) in PUBLIC:
                continue
            for who, http in (("no key", anonymous), ("a wrong key", wrong)):
                response = await call(http, method, template, victim)
                if response.status_code not in REFUSED:
                    answered.append(f"{method} {template} with {who}: {response.status_code}")
                if shown := leaks(victim, response):
                    answered.append(f"{method} {template} with {who} shows {shown}")
    assert answered == [], "\n".join(answered)
    assert await snapshot(victim) == before


async def test_another_workspace_reaches_nothing_of_this_one(
    victim: Victim, attackers: list[Attacker]
) -> None:
    before = await snapshot(victim)
    wrong: list[str] = []
    for attacker in attackers:
        for method, template in routes_to_try():
            if attacker.own_workspace and template.startswith("/v1/auth/"):
                continue  # a session's own sign-in routes name no workspace's resources
            response = await call(
                attacker.http, method, template, victim, workspace=attacker.own_workspace
            )
            status = response.status_code
            if shown := leaks(victim, response):
                wrong.append(f"{attacker.name}: {method} {template} shows {shown}")
            names_a_resource = "{" in template and (method, template) not in PUBLIC
            if status >= 500 or (names_a_resource and status not in REFUSED):
                wrong.append(f"{attacker.name}: {method} {template} answered {status}")
    assert wrong == [], "\n".join(wrong)
    assert await snapshot(victim) == before


PUBLISHABLE_JOB_ROUTES = frozenset(
    {
        ("GET", "/v1/jobs/{job_id}"),
        ("GET", "/v1/jobs/{job_id}/events"),
        ("GET", "/v1/jobs/{job_id}/stream"),
        ("GET", "/v1/jobs/{job_id}/usage"),
        ("POST", "/v1/jobs/{job_id}/feedback"),
        ("POST", "/v1/jobs/{job_id}/input"),
    }
)
"""What a publishable key may do with a job it submitted."""
READ_AND_RATE = PUBLISHABLE_JOB_ROUTES - {("POST", "/v1/jobs/{job_id}/input")}
"""Of those, what answers 200 for any ended job (an answer needs a job that asks)."""


async def test_a_publishable_key_reaches_only_the_jobs_it_submitted(
    platform: Platform, victim: Victim
) -> None:
    minted = await victim.tenant.http.post("/v1/keys", json={"kind": "publishable"})
    before = await snapshot(victim)
    async with httpx.AsyncClient(
        base_url=platform.url,
        headers={"Authorization": f"Bearer {minted.json()['api_key']}"},
        timeout=60,
    ) as app:
        own = await app.post(
            "/v1/jobs?wait=true", json={"skill": "echo", "inputs": {"text": "the app's"}}
        )
        assert own.status_code == 200 and own.json()["status"] == "succeeded", own.text
        job_routes = [
            (m, t) for m, t in routes_to_try() if "{job_id}" in t and (m, t) not in PUBLIC
        ]
        assert PUBLISHABLE_JOB_ROUTES <= set(job_routes)
        wrong: list[str] = []
        for method, template in job_routes:
            others = await call(app, method, template, victim)  # the secret key's job
            expected = 404 if (method, template) in PUBLISHABLE_JOB_ROUTES else 403
            if template.startswith("/v1/subagents/"):  # for job tokens only
                expected = others.status_code if others.status_code in REFUSED else -1
            if others.status_code != expected or leaks(victim, others):
                wrong.append(f"{method} {template}: {others.status_code} {others.text[:200]}")
            if (method, template) in READ_AND_RATE:
                url = fill(template, {"job_id": own.json()["id"]})
                body = {"json": {"rating": 1}} if method == "POST" else {}
                mine = await app.request(method, url, **body)  # type: ignore[arg-type]
                if mine.status_code != 200:
                    wrong.append(f"own job: {method} {template}: {mine.status_code} {mine.text}")
        assert wrong == [], "\n".join(wrong)
    assert _without_keys(await snapshot(victim)) == _without_keys(before)


def _without_keys(state: dict[str, Any]) -> dict[str, Any]:
    """The snapshot less what the publishable key's own job changed (its job, usage, balance,
    deliveries to the workspace's webhook)."""
    added = ("jobs", "usage_all", "balance", "keys", "webhooks")  # its job's deliveries too
    return {k: v for k, v in state.items() if k not in added}
