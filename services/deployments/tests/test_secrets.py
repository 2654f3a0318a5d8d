"""Skillpack secrets: set, list (names and times only) and delete; AES-GCM under a per-workspace
data key bound to workspace, skillpack and name; delivered only to a runner holding the job's
token, sealed so that the bus never carries a value; master-key rotation as a re-wrap."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import uuid
from typing import Any

import pytest
from deployments_testlib import ECHO, JOB_TOKEN_KEY, MASTER_KEY, Harness
from nats.aio.client import Client as NATS
from puras_common import tokens
from puras_common.attempts import attempt_is_live
from puras_common.secret_delivery import SecretDeliveryError, SecretMask, fetch_secrets
from puras_common.tokens import mint_job_token
from puras_deployments import vault
from puras_deployments.tenant_secrets import MAX_SECRETS, MAX_TOTAL_BYTES, MAX_VALUE_BYTES, Secrets
from puras_deployments.vault import MasterKeys
from puras_testing import eventually

VALUE = "sk-live-7f3a9c2e-do-not-leak"


def url(ws: uuid.UUID, name: str = "", **query: str) -> str:
    path = f"/internal/workspaces/{ws}/secrets" + (f"/{name}" if name else "")
    return path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


async def skillpack_id(harness: Harness, ws: uuid.UUID, slug: str = "default") -> uuid.UUID:
    return await harness.db.pool.fetchval(
        "SELECT id FROM skillpacks WHERE workspace_id = $1 AND slug = $2", ws, slug
    )


def token(ws: uuid.UUID, pack: uuid.UUID, job: uuid.UUID | None = None, ttl: int = 60) -> str:
    return mint_job_token(
        JOB_TOKEN_KEY,
        workspace_id=ws,
        job_id=job or uuid.uuid4(),
        skillpack_id=pack,
        attempt=1,
        audiences=(tokens.SECRETS,),
        ttl_seconds=ttl,
    )


async def test_values_go_in_and_never_come_out_of_the_api(harness: Harness) -> None:
    ws = uuid.uuid4()
    created = await harness.http.put(url(ws, "STRIPE_KEY"), json={"value": VALUE})
    assert created.status_code == 200 and created.json()["created"] is True
    updated = await harness.http.put(url(ws, "STRIPE_KEY"), json={"value": VALUE + "-2"})
    assert updated.json()["created"] is False
    await harness.http.put(url(ws, "A_TOKEN"), json={"value": "other-value"})
    listed = await harness.http.get(url(ws))
    assert [s["name"] for s in listed.json()["data"]] == ["A_TOKEN", "STRIPE_KEY"]
    assert set(listed.json()["data"][0]) == {"name", "created_at", "updated_at"}
    for response in (created, updated, listed):
        assert VALUE not in response.text

    stored = await harness.db.pool.fetchrow(
        "SELECT ciphertext FROM secrets WHERE workspace_id = $1 AND name = 'STRIPE_KEY'", ws
    )
    assert VALUE.encode() not in bytes(stored["ciphertext"])
    events = await harness.events("secret.set", "secret.deleted")
    assert [e["payload"]["name"] for e in events if e["workspace_id"] == str(ws)] == [
        "STRIPE_KEY",
        "STRIPE_KEY",
        "A_TOKEN",
    ]
    outbox = await harness.db.pool.fetch("SELECT body::text AS body FROM outbox")
    assert not any(VALUE in r["body"] for r in outbox)

    deleted = await harness.http.delete(url(ws, "STRIPE_KEY"))
    assert deleted.status_code == 200
    assert [s["name"] for s in (await harness.http.get(url(ws))).json()["data"]] == ["A_TOKEN"]
    assert (await harness.http.delete(url(ws, "STRIPE_KEY"))).status_code == 404
    assert [
        e["type"] for e in await harness.events("secret.deleted") if e["workspace_id"] == str(ws)
    ] == ["secret.deleted"]


async def test_secrets_belong_to_a_skillpack(harness: Harness) -> None:
    ws = uuid.uuid4()
    await harness.push(ws, ECHO, skillpack="tools")
    await harness.http.put(url(ws, "TOOLS_ONLY", skillpack="tools"), json={"value": "abcd1234"})
    await harness.http.put(url(ws, "DEFAULT_ONLY"), json={"value": "efgh5678"})
    assert [
        s["name"] for s in (await harness.http.get(url(ws, skillpack="tools"))).json()["data"]
    ] == ["TOOLS_ONLY"]
    assert [s["name"] for s in (await harness.http.get(url(ws))).json()["data"]] == ["DEFAULT_ONLY"]
    assert (await harness.http.get(url(ws, skillpack="ghost"))).status_code == 404
    assert (await harness.http.delete(url(ws, "TOOLS_ONLY"))).status_code == 404
    assert (await harness.http.get(url(uuid.uuid4()))).json()["data"] == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("lower_case", "must match ^[A-Z_][A-Z0-9_]*$"),
        ("9LIVES", "must match ^[A-Z_][A-Z0-9_]*$"),
        ("HAS-DASH", "must match ^[A-Z_][A-Z0-9_]*$"),
        ("PURAS_JOB_TOKEN", "is reserved"),
        ("PATH", "is reserved"),
        ("A" * 129, "secret name is 129 characters; the limit is 128"),
    ],
)
async def test_bad_names_are_refused_with_the_rule(
    harness: Harness, name: str, message: str
) -> None:
    response = await harness.http.put(url(uuid.uuid4(), name), json={"value": "x"})
    assert response.status_code == 400 and message in response.json()["error"]["message"]
    assert response.json()["error"]["details"][0]["pointer"] == "/name"


async def test_value_and_skillpack_limits_hold_at_their_edges(harness: Harness) -> None:
    ws = uuid.uuid4()
    assert (
        await harness.http.put(url(ws, "EDGE"), json={"value": "v" * MAX_VALUE_BYTES})
    ).status_code == 200
    over = await harness.http.put(
        url(ws, "OVER"), json={"value": "é" * (MAX_VALUE_BYTES // 2) + "x"}
    )
    assert over.status_code == 400
    assert (
        over.json()["error"]["message"]
        == f"value is {MAX_VALUE_BYTES + 1} bytes; the limit is {MAX_VALUE_BYTES}"
    )
    nul = await harness.http.put(url(ws, "NUL"), json={"value": "a\x00b"})
    assert nul.status_code == 400 and "NUL" in nul.json()["error"]["message"]
    assert (await harness.http.put(url(ws, "NUMBER"), json={"value": 5})).status_code == 400

    # Total bytes: fill to exactly the limit, then one more byte is refused.
    for i in range(MAX_TOTAL_BYTES // MAX_VALUE_BYTES - 1):
        assert (
            await harness.http.put(url(ws, f"FILL_{i}"), json={"value": "v" * MAX_VALUE_BYTES})
        ).status_code == 200
    assert (await harness.http.put(url(ws, "ONE_MORE"), json={"value": "x"})).status_code == 409
    # Overwriting an existing secret counts its new size, not both.
    assert (
        await harness.http.put(url(ws, "EDGE"), json={"value": "w" * MAX_VALUE_BYTES})
    ).status_code == 200

    counted = uuid.uuid4()
    for i in range(MAX_SECRETS):
        assert (
            await harness.http.put(url(counted, f"S_{i}"), json={"value": "1"})
        ).status_code == 200
    too_many = await harness.http.put(url(counted, "ONE_MORE"), json={"value": "1"})
    assert (
        too_many.status_code == 409
        and f"the limit is {MAX_SECRETS}" in too_many.json()["error"]["message"]
    )


async def test_delivery_needs_the_jobs_token_and_never_crosses_the_bus_in_clear(
    harness: Harness, nc: NATS
) -> None:
    ws = uuid.uuid4()
    await harness.http.put(url(ws, "STRIPE_KEY"), json={"value": VALUE})
    await harness.http.put(
        url(ws, "MULTI_LINE"), json={"value": "-----BEGIN-----\nline-two-secret\n-----END-----"}
    )
    pack = await skillpack_id(harness, ws)
    seen: list[bytes] = []

    async def capture(msg: Any) -> None:
        seen.append(msg.subject.encode() + b" " + (msg.reply or "").encode() + b" " + msg.data)

    tap = await nc.subscribe(">", cb=capture)
    job = uuid.uuid4()
    try:
        values = await fetch_secrets(
            nc, subject=harness.secrets_subject, job_token=token(ws, pack, job), job_id=job
        )
        await nc.flush()
    finally:
        await tap.unsubscribe()
    assert values == {
        "STRIPE_KEY": VALUE,
        "MULTI_LINE": "-----BEGIN-----\nline-two-secret\n-----END-----",
    }
    assert (
        any(b"svc.deployments.secrets" in m for m in seen) and len(seen) >= 2
    )  # the request and the reply
    for needle in (VALUE.encode(), base64.b64encode(VALUE.encode()), b"line-two-secret"):
        assert not any(needle in m for m in seen)

    other_job = uuid.uuid4()
    with pytest.raises(SecretDeliveryError, match="does not decrypt for this job"):
        # A reply sealed for one job is useless to another.
        await fetch_secrets(
            nc, subject=harness.secrets_subject, job_token=token(ws, pack, job), job_id=other_job
        )
    with pytest.raises(SecretDeliveryError, match="signature does not match"):
        forged = mint_job_token(
            "not-the-key",
            workspace_id=ws,
            job_id=job,
            skillpack_id=pack,
            attempt=1,
            audiences=(tokens.SECRETS,),
            ttl_seconds=60,
        )
        await fetch_secrets(nc, subject=harness.secrets_subject, job_token=forged, job_id=job)
    with pytest.raises(SecretDeliveryError, match="does not open secrets"):
        # The token a job's own process holds opens its drive, media and subagents, never this.
        own = mint_job_token(
            JOB_TOKEN_KEY, workspace_id=ws, job_id=job, skillpack_id=pack, attempt=1, ttl_seconds=60
        )
        await fetch_secrets(nc, subject=harness.secrets_subject, job_token=own, job_id=job)
    with pytest.raises(SecretDeliveryError, match="expired"):
        await fetch_secrets(
            nc, subject=harness.secrets_subject, job_token=token(ws, pack, job, ttl=-1), job_id=job
        )
    empty_job = uuid.uuid4()
    assert (
        await fetch_secrets(
            nc,
            subject=harness.secrets_subject,
            job_token=token(ws, uuid.uuid4(), empty_job),
            job_id=empty_job,
        )
        == {}
    )


async def test_a_ciphertext_moved_to_another_row_does_not_decrypt(
    harness: Harness, nc: NATS
) -> None:
    ws, other_ws = uuid.uuid4(), uuid.uuid4()
    await harness.http.put(url(ws, "REAL"), json={"value": VALUE})
    await harness.http.put(url(ws, "DECOY"), json={"value": "decoy-value"})
    await harness.push(ws, ECHO, skillpack="second")
    await harness.http.put(url(ws, "REAL", skillpack="second"), json={"value": "second-value"})
    await harness.http.put(url(other_ws, "REAL"), json={"value": "theirs"})
    pack, second, theirs = (
        await skillpack_id(harness, ws),
        await skillpack_id(harness, ws, "second"),
        await skillpack_id(harness, other_ws),
    )
    stolen = await harness.db.pool.fetchval(
        "SELECT ciphertext FROM secrets WHERE skillpack_id = $1 AND name = 'REAL'", pack
    )
    secrets: Secrets = harness.service.secrets
    # Another name, another skillpack of the same workspace, another workspace: all refuse it.
    for target, name in ((pack, "DECOY"), (second, "REAL"), (theirs, "REAL")):
        original = await harness.db.pool.fetchval(
            "SELECT ciphertext FROM secrets WHERE skillpack_id = $1 AND name = $2", target, name
        )
        await harness.db.pool.execute(
            "UPDATE secrets SET ciphertext = $3 WHERE skillpack_id = $1 AND name = $2",
            target,
            name,
            stolen,
        )
        with pytest.raises(vault.VaultError, match=f"secret {name} does not decrypt here"):
            await secrets.values(harness.db.pool, target)
        job = uuid.uuid4()
        owner = ws if target != theirs else other_ws
        with pytest.raises(SecretDeliveryError, match="does not decrypt here"):
            await fetch_secrets(
                nc, subject=harness.secrets_subject, job_token=token(owner, target, job), job_id=job
            )
        await harness.db.pool.execute(
            "UPDATE secrets SET ciphertext = $3 WHERE skillpack_id = $1 AND name = $2",
            target,
            name,
            original,
        )
    # A wrapped data key moved to another workspace does not unwrap either.
    wrapped = await harness.db.pool.fetchrow(
        "SELECT key_id, wrapped FROM data_keys WHERE workspace_id = $1", ws
    )
    with pytest.raises(vault.VaultError):
        secrets.keys.unwrap(other_ws, wrapped["key_id"], wrapped["wrapped"])
    assert (await secrets.values(harness.db.pool, pack))["REAL"] == VALUE


async def test_rotating_the_master_key_rewraps_data_keys_only(harness: Harness) -> None:
    ws = uuid.uuid4()
    await harness.http.put(url(ws, "ROTATED"), json={"value": VALUE})
    pack = await skillpack_id(harness, ws)
    before = await harness.db.pool.fetchval(
        "SELECT ciphertext FROM secrets WHERE skillpack_id = $1", pack
    )
    new_key = "22" * 32
    rotated = Secrets(
        harness.db.outbox,
        vault.MasterKeys.from_settings(new_key, [MASTER_KEY]),
        job_token_key=JOB_TOKEN_KEY,
    )
    assert await rotated.rewrap(harness.db.pool) >= 1
    row = await harness.db.pool.fetchrow(
        "SELECT key_id, rewrapped_at FROM data_keys WHERE workspace_id = $1", ws
    )
    assert row["key_id"] == vault.key_id(bytes.fromhex(new_key)) and row["rewrapped_at"] is not None
    assert (
        await harness.db.pool.fetchval(
            "SELECT ciphertext FROM secrets WHERE skillpack_id = $1", pack
        )
        == before
    )
    only_new = Secrets(
        harness.db.outbox, vault.MasterKeys.from_settings(new_key), job_token_key=JOB_TOKEN_KEY
    )
    assert await only_new.values(harness.db.pool, pack) == {"ROTATED": VALUE}
    only_old = Secrets(
        harness.db.outbox, vault.MasterKeys.from_settings(MASTER_KEY), job_token_key=JOB_TOKEN_KEY
    )
    with pytest.raises(vault.VaultError, match="which this process does not have"):
        await only_old.values(harness.db.pool, pack)
    # Put things back for the other tests of this session.
    await Secrets(
        harness.db.outbox,
        vault.MasterKeys.from_settings(MASTER_KEY, [new_key]),
        job_token_key=JOB_TOKEN_KEY,
    ).rewrap(harness.db.pool)


def test_master_keys_must_be_32_bytes_of_hex() -> None:
    with pytest.raises(vault.MasterKeyError, match="must be hex"):
        vault.parse_master_key("not hex at all")
    with pytest.raises(vault.MasterKeyError, match="is 16 bytes; it must be 32"):
        vault.parse_master_key("ab" * 16)
    assert len(vault.parse_master_key("ab" * 32)) == 32


def test_the_mask_hides_values_in_text_and_json() -> None:
    mask = SecretMask([VALUE, "-----BEGIN-----\nline-two-secret\n-----END-----", "abc"])
    assert mask.text(f"calling with {VALUE}!") == "calling with ***!"
    assert mask.text("got line-two-secret on its own line") == "got *** on its own line"
    assert mask.text("abc is too short to mask") == "abc is too short to mask"
    assert mask.value({"key": [VALUE, 3, {VALUE: None}]}) == {"key": ["***", 3, {"***": None}]}
    assert not SecretMask([]) and mask.text("") == ""


async def test_many_requests_at_once_are_all_answered(harness: Harness, nc: NATS) -> None:
    ws = uuid.uuid4()
    await harness.http.put(url(ws, "CONCURRENT"), json={"value": VALUE})
    pack = await skillpack_id(harness, ws)
    jobs = [uuid.uuid4() for _ in range(50)]
    answers = await asyncio.gather(
        *(
            fetch_secrets(
                nc, subject=harness.secrets_subject, job_token=token(ws, pack, j), job_id=j
            )
            for j in jobs
        )
    )
    assert all(a == {"CONCURRENT": VALUE} for a in answers)


async def test_answers_come_from_memory_until_any_replica_changes_a_secret(
    harness: Harness,
) -> None:
    ws = uuid.uuid4()
    await harness.http.put(url(ws, "ROTATING"), json={"value": "first-value"})
    pack = await skillpack_id(harness, ws)
    keys = vault.MasterKeys.from_settings(MASTER_KEY)
    reader = Secrets(harness.db.outbox, keys, job_token_key=JOB_TOKEN_KEY)  # one replica answers
    writer = Secrets(harness.db.outbox, keys, job_token_key=JOB_TOKEN_KEY)  # another takes the PUTs
    listening = asyncio.create_task(reader.listen(harness.db.dsn, schema=harness.db.schema))
    try:
        await eventually(lambda: reader._listening, what="the listener to connect")
        assert await reader.values(harness.db.pool, pack) == {"ROTATING": "first-value"}
        assert reader._sealed.get(pack) is not None  # cached (sealed rows, not values)
        await writer.put(
            workspace_id=ws, skillpack=str(pack), name="ROTATING", value="second-value"
        )

        async def fresh() -> bool:
            return await reader.values(harness.db.pool, pack) == {"ROTATING": "second-value"}

        await eventually(fresh, what="the other replica to drop its cached rows")
        await writer.delete(workspace_id=ws, skillpack=str(pack), name="ROTATING")

        async def gone() -> bool:
            return await reader.values(harness.db.pool, pack) == {}

        await eventually(gone, what="the deletion to reach the other replica")
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    assert reader._listening is False and reader._sealed == {}


async def test_secrets_wait_for_a_scheduler_that_does_not_answer_rather_than_refuse(
    harness: Harness, nc: NATS
) -> None:
    """The scheduler confirms a token's attempt before its secrets are handed out. One that is
    away (restarting, or a NATS node failing over) decides nothing: no answer goes back, so the
    runner asks again and its job does not fail; an answer that the attempt is over refuses."""
    ws = uuid.uuid4()
    await harness.http.put(url(ws, "STRIPE_KEY"), json={"value": VALUE})
    pack = await skillpack_id(harness, ws)
    attempts_subject = f"svc.scheduler.attempt.test-{uuid.uuid4().hex}"
    secrets_subject = f"{harness.secrets_subject}.confirmed"
    secrets = Secrets(
        harness.db.outbox,
        MasterKeys.from_settings(MASTER_KEY),
        job_token_key=JOB_TOKEN_KEY,
        confirm=functools.partial(attempt_is_live, nc, subject=attempts_subject, timeout=0.2),
    )

    async def answer(msg: Any) -> None:
        await secrets.answer(harness.db.pool, msg)

    served = await nc.subscribe(secrets_subject, cb=answer)
    job = uuid.uuid4()
    try:
        # Silence, however often it asks, until it gives up and says so.
        with pytest.raises(SecretDeliveryError, match=r"did not answer within 1 s .*TimeoutError"):
            await fetch_secrets(
                nc,
                subject=secrets_subject,
                job_token=token(ws, pack, job),
                job_id=job,
                timeout=0.5,
                give_up_after=1.0,
            )
        live = {"live": True}

        async def scheduler(msg: Any) -> None:
            await msg.respond(json.dumps(live).encode())

        answering = await nc.subscribe(attempts_subject, cb=scheduler)
        try:
            assert await fetch_secrets(
                nc, subject=secrets_subject, job_token=token(ws, pack, job), job_id=job
            ) == {"STRIPE_KEY": VALUE}
            live["live"] = False
            with pytest.raises(SecretDeliveryError, match="is not running"):
                await fetch_secrets(
                    nc, subject=secrets_subject, job_token=token(ws, pack, job), job_id=job
                )
        finally:
            await answering.unsubscribe()
    finally:
        await served.unsubscribe()


async def test_a_skillpack_without_secrets_answers_without_asking_the_scheduler(
    harness: Harness, nc: NATS
) -> None:
    """Nothing to guard, nothing to confirm: a job of a skillpack with no secrets gets none at
    once, while the scheduler is away; once the skillpack has one, the attempt is confirmed."""
    ws = uuid.uuid4()
    await harness.http.put(url(ws, "FIRST"), json={"value": VALUE})
    pack = await skillpack_id(harness, ws)
    await harness.http.delete(url(ws, "FIRST"))
    asked: list[Any] = []

    async def confirm(job_id: uuid.UUID, attempt: int) -> bool:
        asked.append((job_id, attempt))
        return True

    secrets = Secrets(
        harness.db.outbox,
        MasterKeys.from_settings(MASTER_KEY),
        job_token_key=JOB_TOKEN_KEY,
        confirm=confirm,
    )
    subject = f"{harness.secrets_subject}.empty-{uuid.uuid4().hex[:6]}"

    async def answer(msg: Any) -> None:
        await secrets.answer(harness.db.pool, msg)

    served = await nc.subscribe(subject, cb=answer)
    job = uuid.uuid4()
    try:
        got = await fetch_secrets(nc, subject=subject, job_token=token(ws, pack, job), job_id=job)
        assert got == {} and asked == []
        await harness.http.put(url(ws, "SECOND"), json={"value": VALUE})
        got = await fetch_secrets(nc, subject=subject, job_token=token(ws, pack, job), job_id=job)
        assert got == {"SECOND": VALUE} and asked == [(job, 1)]
    finally:
        await served.unsubscribe()


async def test_a_secrets_service_that_stays_away_fails_the_request_saying_so(nc: NATS) -> None:
    """Nobody serving the subject (the deployments service restarting for longer than the runner
    waits): the request is retried, then refused with what stayed silent, not a bare NATS
    error that the runners would report as their own crash."""
    job = uuid.uuid4()
    with pytest.raises(
        SecretDeliveryError,
        match=r"secrets service did not answer within 0.5 s \(NoRespondersError",
    ):
        await fetch_secrets(
            nc,
            subject=f"svc.deployments.secrets.nobody-{uuid.uuid4().hex}",
            job_token="not looked at",
            job_id=job,
            timeout=0.1,
            give_up_after=0.5,
        )
