"""People over HTTP: signing in (an HttpOnly, SameSite=Strict cookie, or a bearer token), the
workspace a session acts in, CSRF checks on cookie requests that change anything, owners and
members, invitations, sign-out, expiry, and the rate limit on failed sign-ins."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from nats.aio.client import Client as NATS
from puras_testing import EventCollector
from puras_testing.platform import ECHO_PROJECT, Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def owner_of(platform: Platform, prefix: str) -> tuple[Tenant, str]:
    tenant = await platform.tenant(unique(prefix))
    email = f"owner@{tenant.slug}.example"
    await platform.add_user(tenant.slug, email)
    return tenant, email


def cookie_attributes(response: httpx.Response) -> dict[str, str]:
    header = response.headers["set-cookie"]
    parts = [p.strip() for p in header.split(";")]
    name, _, value = parts[0].partition("=")
    attributes = {"name": name, "value": value}
    for part in parts[1:]:
        key, _, val = part.partition("=")
        attributes[key.lower()] = val
    return attributes


async def test_a_session_cookie_is_httponly_strict_and_acts_in_a_named_workspace(
    platform: Platform, nc: NATS
) -> None:
    tenant, email = await owner_of(platform, "sess")
    other = await platform.tenant(unique("other"))
    async with EventCollector(nc, "user.>") as signed_in:
        async with httpx.AsyncClient(base_url=platform.url) as http:
            login = await http.post(
                "/v1/auth/login", json={"email": email.upper(), "password": "a long password"}
            )
            assert login.status_code == 200, login.text
            cookie = cookie_attributes(login)
            assert cookie["name"] == "puras_session" and cookie["value"].startswith("eyJ")
            assert "httponly" in cookie and cookie["samesite"].lower() == "strict"
            assert cookie["path"] == "/" and "secure" not in cookie  # plain HTTP here
            assert 1700 <= int(cookie["max-age"]) <= 1800
            body = login.json()
            assert "token" not in body and body["user"]["email"] == email
            assert body["workspaces"] == [
                {"id": tenant.id, "slug": tenant.slug, "name": tenant.slug, "role": "owner"}
            ]
            unnamed = await http.get("/v1/balance")
            assert unnamed.status_code == 400
            assert unnamed.json()["error"]["details"][0]["pointer"] == "?workspace"
            assert tenant.slug in unnamed.json()["error"]["message"]
            mine = await http.get("/v1/balance", params={"workspace": tenant.slug})
            assert mine.status_code == 200 and mine.json()["workspace"] == tenant.slug
            by_id = await http.get("/v1/balance", params={"workspace": tenant.id})
            assert by_id.status_code == 200
            theirs = await http.get("/v1/balance", params={"workspace": other.slug})
            assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "not_found"
        event = await signed_in.wait_for(lambda e: e.type == "user.signed_in")
    assert event.subject == f"user.{body['user']['id']}.signed_in"


async def test_the_same_token_works_as_a_bearer_without_csrf(platform: Platform) -> None:
    tenant, email = await owner_of(platform, "bearer")
    assert (await tenant.push(ECHO_PROJECT)).status_code == 201
    async with httpx.AsyncClient(base_url=platform.url, timeout=60) as http:
        issued = await http.post(
            "/v1/auth/token", json={"email": email, "password": "a long password"}
        )
        assert issued.status_code == 200 and "set-cookie" not in issued.headers
        token = issued.json()["token"]
        job = await http.post(
            "/v1/jobs",
            params={"workspace": tenant.slug, "wait": "true"},
            json={"skill": "echo", "inputs": {"text": "by a person"}},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert job.status_code == 200, job.text
    assert job.json()["result"] == {"echoed": "by a person"}
    assert job.json()["workspace"] == tenant.slug


async def test_cookie_requests_that_change_state_need_the_csrf_token_and_own_origin(
    platform: Platform,
) -> None:
    _, email = await owner_of(platform, "csrf")
    person = await platform.sign_in(email)
    http = person.http
    path = "/v1/secrets/CSRF_PROBE"
    missing = await http.put(path, json={"value": "x"}, headers={"X-CSRF-Token": ""})
    assert (
        missing.status_code == 403 and "missing X-CSRF-Token" in missing.json()["error"]["message"]
    )
    wrong = await http.put(path, json={"value": "x"}, headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403 and "wrong X-CSRF-Token" in wrong.json()["error"]["message"]
    foreign = await http.put(path, json={"value": "x"}, headers={"Origin": "http://127.0.0.1:1"})
    assert foreign.status_code == 403 and "cross-origin" in foreign.json()["error"]["message"]
    assert (await http.get("/v1/secrets")).json()["data"] == []  # nothing was written
    own = await http.put(path, json={"value": "x"}, headers={"Origin": platform.url})
    assert own.status_code == 200, own.text
    assert (await http.get("/v1/secrets")).json()["data"][0]["name"] == "CSRF_PROBE"
    # Signing in from another origin's page is refused too (login CSRF).
    async with httpx.AsyncClient(base_url=platform.url) as other:
        refused = await other.post(
            "/v1/auth/login",
            json={"email": email, "password": "a long password"},
            headers={"Origin": "http://127.0.0.1:1"},
        )
    assert refused.status_code == 403 and "set-cookie" not in refused.headers


async def test_members_use_the_workspace_and_only_owners_manage_keys_secrets_and_people(
    platform: Platform, nc: NATS
) -> None:
    tenant, owner_email = await owner_of(platform, "roles")
    assert (await tenant.push(ECHO_PROJECT)).status_code == 201
    owner = await platform.sign_in(owner_email)
    member_email = f"member@{tenant.slug}.example"
    async with EventCollector(nc, f"member.{tenant.id}.>") as events:
        invited = await owner.http.post(
            "/v1/members/invitations", json={"email": member_email, "role": "member"}
        )
        assert invited.status_code == 201, invited.text
        link = invited.json()["url"]
        assert link == f"{platform.url}/console/invite#{invited.json()['token']}"
        async with httpx.AsyncClient(base_url=platform.url) as anon:
            token = invited.json()["token"]
            offer = await anon.post("/v1/auth/invitations/lookup", json={"token": token})
            assert offer.json() == {
                "email": member_email,
                "role": "member",
                "workspace": {"slug": tenant.slug, "name": tenant.slug},
                "account_exists": False,
            }
            short = await anon.post(
                "/v1/auth/invitations/accept", json={"token": token, "password": "short"}
            )
            assert (
                short.status_code == 400
                and short.json()["error"]["details"][0]["pointer"] == "/password"
            )
            accepted = await anon.post(
                "/v1/auth/invitations/accept",
                json={"token": token, "password": "the member's password"},
            )
            assert accepted.status_code == 200, accepted.text
            assert "puras_session=" in accepted.headers["set-cookie"]
            again = await anon.post(
                "/v1/auth/invitations/accept", json={"token": token, "password": "x" * 12}
            )
            assert again.status_code == 404
        await events.wait_for(lambda e: e.type == "member.added")
    member = await platform.sign_in(member_email, "the member's password")
    assert member.workspaces[0]["role"] == "member"

    # A member runs jobs, pushes, reads keys and secret names...
    job = await member.http.post(
        "/v1/jobs?wait=true", json={"skill": "echo", "inputs": {"text": "member"}}
    )
    assert job.status_code == 200 and job.json()["status"] == "succeeded"
    assert (await member.http.get("/v1/keys")).status_code == 200
    assert (await member.http.get("/v1/secrets")).status_code == 200
    # ...but manages neither keys, secrets nor people.
    key_id = (await member.http.get("/v1/keys")).json()["data"][0]["id"]
    for method, path, body in (
        ("POST", "/v1/keys", {"name": "nope"}),
        ("DELETE", f"/v1/keys/{key_id}", None),
        ("PUT", "/v1/secrets/NOPE", {"value": "x"}),
        ("DELETE", "/v1/secrets/NOPE", None),
        ("POST", "/v1/members/invitations", {"email": "x@example.com"}),
        ("GET", "/v1/members/invitations", None),
    ):
        refused = await member.http.request(method, path, json=body)
        assert refused.status_code == 403, (method, path, refused.text)
        assert "only owners" in refused.json()["error"]["message"]

    # API keys cannot add people, whatever their rights.
    by_key = await tenant.http.post("/v1/members/invitations", json={"email": "k@example.com"})
    assert by_key.status_code == 403 and "not with an API key" in by_key.json()["error"]["message"]

    members = {m["email"]: m for m in (await owner.http.get("/v1/members")).json()["data"]}
    assert members[member_email]["role"] == "member" and members[owner_email]["role"] == "owner"
    owner_id, member_id = members[owner_email]["user_id"], members[member_email]["user_id"]
    last = await owner.http.patch(f"/v1/members/{owner_id}", json={"role": "member"})
    assert last.status_code == 409 and "last owner" in last.json()["error"]["message"]
    promoted = await owner.http.patch(f"/v1/members/{member_id}", json={"role": "owner"})
    assert promoted.status_code == 200 and promoted.json()["role"] == "owner"
    assert (await member.http.post("/v1/keys", json={"name": "now an owner"})).status_code == 201
    removed = await member.http.delete(f"/v1/members/{owner_id}")
    assert removed.status_code == 200
    gone = await owner.http.get("/v1/balance")
    assert gone.status_code == 404  # no longer a member: the workspace is not theirs to see


async def test_sign_out_and_expiry_end_a_session(platform: Platform) -> None:
    tenant, email = await owner_of(platform, "bye")
    person = await platform.sign_in(email)
    token = person.http.cookies["puras_session"]
    assert (await person.http.get("/v1/balance")).status_code == 200
    out = await person.http.post("/v1/auth/logout")
    assert out.status_code == 200
    assert cookie_attributes(out)["max-age"] == "0"
    async with httpx.AsyncClient(base_url=platform.url) as replay:
        reused = await replay.get(
            "/v1/balance",
            params={"workspace": tenant.slug},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert reused.status_code == 401 and reused.json()["error"]["code"] == "revoked_key"

    claims = jwt.decode(token, options={"verify_signature": False})
    key = platform.config.credentials.session_key
    expired = jwt.encode({**claims, "exp": int(time.time()) - 5}, key, algorithm="HS256")
    forged = jwt.encode(
        {**claims, "exp": int(time.time()) + 600},
        "not the platform's session key, though as long",
        algorithm="HS256",
    )
    async with httpx.AsyncClient(base_url=platform.url) as http:
        for token_, says in ((expired, "expired"), (forged, "InvalidSignatureError")):
            refused = await http.get(
                "/v1/balance",
                params={"workspace": tenant.slug},
                headers={"Authorization": f"Bearer {token_}"},
            )
            assert refused.status_code == 401, refused.text
            assert says in refused.json()["error"]["message"]


async def test_failed_sign_ins_are_limited_per_email(platform: Platform) -> None:
    _, email = await owner_of(platform, "guess")
    _, bystander = await owner_of(platform, "bystander")
    async with httpx.AsyncClient(base_url=platform.url) as http:

        async def attempt(who: str, password: str) -> httpx.Response:
            return await http.post("/v1/auth/login", json={"email": who, "password": password})

        for n in range(5):
            wrong = await attempt(email, f"wrong password {n}")
            assert wrong.status_code == 401 and wrong.json()["error"]["message"] == (
                "wrong email or password"
            )
        limited = await attempt(email, "a long password")  # even the right one, for now
        assert limited.status_code == 429, limited.text
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 900
        unknown = await attempt("nobody@example.com", "whatever password")
        assert unknown.status_code == 401  # no hint that the account does not exist
        assert (await attempt(bystander, "a long password")).status_code == 200


def _strip(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "user_id"}


async def test_the_operator_creates_users_and_resets_passwords(platform: Platform) -> None:
    tenant = await platform.tenant(unique("ops"))
    async with httpx.AsyncClient(base_url=platform.url, headers=platform.admin_headers()) as http:
        path = f"/v1/admin/workspaces/{tenant.slug}/users"
        created = await http.post(path, json={"email": "Ops@Example.com"})
        assert created.status_code == 201, created.text
        generated = created.json()["password"]
        assert len(generated) >= 16
        assert _strip(created.json()) == {
            "email": "ops@example.com",
            "workspace": tenant.slug,
            "role": "owner",
            "created": True,
            "password": generated,
        }
        person = await platform.sign_in("ops@example.com", generated)
        again = await http.post(path, json={"email": "ops@example.com", "reset_password": True})
        assert again.status_code == 200 and again.json()["password"] != generated
        bad = await http.post(path, json={"email": "not an email"})
        assert bad.status_code == 400 and bad.json()["error"]["details"][0]["pointer"] == "/email"
        missing = await http.post("/v1/admin/workspaces/no-such-ws/users", json={"email": "a@b.c"})
        assert missing.status_code == 404
    # A new password ends the person's sessions.
    assert (await person.http.get("/v1/balance")).status_code == 401
