"""Each service's NATS user, tried against what it must not do: manage streams or consumers,
read streams it does not consume, take another service's work, publish events or call endpoints
that are not its own, or listen on another service's replies. The server refuses each at its
permission check, before any JetStream API sees the request; the streams and consumers are left
as provisioned. (That every allowed call works is shown by the rest of the suite, which runs the
platform under these users.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import nats
import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from puras_common import streams
from puras_common.access import (
    EVENT_PUBLISH,
    REQUESTS,
    SERVICES,
    inbox_prefix,
    service_permissions,
)
from puras_common.consumers import EPHEMERAL_READERS, durable_consumers
from puras_testing import Infra, eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")

DURABLES = [spec for specs in durable_consumers().values() for spec in specs]


def matches(pattern: str, subject: str) -> bool:
    """Whether NATS would match ``subject`` against ``pattern`` (``*`` and ``>`` wildcards)."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


def concrete(pattern: str) -> str:
    """A subject that ``pattern`` matches."""
    return ".".join(
        str(uuid.uuid4()) if t == "*" else "x" if t == ">" else t for t in pattern.split(".")
    )


@dataclass
class Connection:
    service: str
    nc: NATS
    errors: list[str] = field(default_factory=list)

    def refused(self, subject: str, kind: str = "publish") -> bool:
        needle = f'{kind} to "{subject}"'.lower()
        return any(needle in e.lower() for e in self.errors)


@pytest.fixture
async def connect(infra: Infra) -> AsyncIterator[object]:
    if not infra.enforces_permissions:
        pytest.skip("an external NATS (PURAS_TEST_NATS_URL) has its own users")
    opened: list[NATS] = []

    async def open_as(service: str) -> Connection:
        conn = Connection(service, None)  # type: ignore[arg-type]

        async def on_error(exc: Exception) -> None:
            conn.errors.append(str(exc))

        conn.nc = await nats.connect(
            infra.nats_url(service),
            error_cb=on_error,
            max_reconnect_attempts=0,
            inbox_prefix=inbox_prefix(service),
        )
        opened.append(conn.nc)
        return conn

    yield open_as
    for nc in opened:
        await nc.close()


def refused_publishes(service: str) -> list[str]:
    """What ``service`` must not publish, derived from the platform's own tables."""
    own = durable_consumers()[service]
    allowed = service_permissions(service).publish_allow
    ephemeral = EPHEMERAL_READERS.get(service, ())
    out: list[str] = []
    for stream in streams.ALL:
        s = stream.name
        out += [
            f"$JS.API.STREAM.CREATE.{s}",
            f"$JS.API.STREAM.UPDATE.{s}",
            f"$JS.API.STREAM.DELETE.{s}",
            f"$JS.API.STREAM.PURGE.{s}",
            f"$JS.API.STREAM.MSG.DELETE.{s}",
        ]
        if s not in ephemeral:  # a stream it may not read at will
            out += [
                f"$JS.API.CONSUMER.CREATE.{s}",
                f"$JS.API.CONSUMER.CREATE.{s}.peek",
                f"$JS.API.CONSUMER.CREATE.{s}.peek.x",
                f"$JS.API.STREAM.MSG.GET.{s}",
                f"$JS.API.DIRECT.GET.{s}",
                f"$JS.API.DIRECT.GET.{s}.x",
            ]
    out.append("$JS.API.STREAM.CREATE.EVIL")
    for spec in DURABLES:
        s, d = spec.stream.name, spec.durable
        out += [
            f"$JS.API.CONSUMER.DELETE.{s}.{d}",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{s}.{d}",
            f"$JS.API.CONSUMER.CREATE.{s}.{d}",
            f"$JS.API.CONSUMER.CREATE.{s}.{d}.x",
        ]
        if spec not in own:
            out += [
                f"$JS.API.CONSUMER.MSG.NEXT.{s}.{d}",
                f"$JS.ACK.{s}.{d}.1.1.1.1.1",
                f"dlq.{s.lower()}.{d}",
            ]
    for other in SERVICES:
        for pattern in EVENT_PUBLISH[other]:
            subject = concrete(pattern)
            if not any(matches(a, subject) for a in allowed):
                out.append(subject)
        subject = f"svc.{other}.probe"
        if other != service and not any(matches(a, subject) for a in REQUESTS[service]):
            out.append(subject)
    return out


def refused_subscriptions(service: str) -> list[str]:
    others = [s for s in SERVICES if s != service]
    return [
        "_INBOX.>",
        ">",
        "job.>",
        "$JS.>",
        *(f"{inbox_prefix(o)}.>" for o in others),
        *(f"svc.{o}.>" for o in others),
    ]


async def snapshot(js: object) -> dict[str, object]:
    """Every stream's and durable consumer's configuration, as the admin sees them."""
    out: dict[str, object] = {}
    for stream in streams.ALL:
        out[stream.name] = (await js.stream_info(stream.name)).config  # type: ignore[attr-defined]
    for spec in DURABLES:
        info = await js.consumer_info(spec.stream.name, spec.durable)  # type: ignore[attr-defined]
        out[f"{spec.stream.name}/{spec.durable}"] = info.config
    return out


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_is_refused_everything_outside_its_permissions(
    infra: Infra, connect: object, nc: NATS, service: str
) -> None:
    before = await snapshot(nc.jetstream())
    conn: Connection = await connect(service)  # type: ignore[operator]
    publishes = refused_publishes(service)
    subscriptions = refused_subscriptions(service)
    assert len(publishes) > 100
    for subject in publishes:
        await conn.nc.publish(subject, b"{}", reply=conn.nc.new_inbox())
    for subject in subscriptions:
        await conn.nc.subscribe(subject)
    await conn.nc.flush()

    def missing() -> list[str]:
        return [s for s in publishes if not conn.refused(s)] + [
            s for s in subscriptions if not conn.refused(s, "subscription")
        ]

    await eventually(lambda: not missing(), timeout=20, what=f"refusals for {service}")
    assert conn.nc.is_connected
    assert await snapshot(nc.jetstream()) == before
    # What it is allowed: look at its own consumers.
    js = conn.nc.jetstream(timeout=5)
    for spec in durable_consumers()[service]:
        info = await js.consumer_info(spec.stream.name, spec.durable)
        assert info.name == spec.durable


async def test_a_function_runner_can_neither_read_jobs_nor_cut_the_ledger(
    infra: Infra, connect: object, nc: NATS
) -> None:
    """The two attacks the function runner's user once allowed: read every tenant's inputs from
    JOBS, and cut LEDGER to one message."""
    conn: Connection = await connect("function-runner")  # type: ignore[operator]
    js = conn.nc.jetstream(timeout=1)
    ledger = (await nc.jetstream().stream_info("LEDGER")).config
    with pytest.raises(nats.errors.TimeoutError):
        await js.update_stream(StreamConfig(name="LEDGER", subjects=ledger.subjects, max_msgs=1))
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_consumer("JOBS", ConsumerConfig(ack_policy=AckPolicy.NONE))
    with pytest.raises(nats.errors.TimeoutError):
        await js.get_last_msg("JOBS", "job.>")
    assert (await nc.jetstream().stream_info("LEDGER")).config.max_msgs == ledger.max_msgs


async def test_the_gateway_names_its_own_consumers_on_jobs_and_cannot_reach_a_durable(
    infra: Infra, connect: object, nc: NATS
) -> None:
    """The gateway may open short-lived consumers on JOBS (its live fan-out, a job's backlog)
    under names of its own; a body naming a durable cannot redirect the request to it."""
    conn: Connection = await connect("gateway")  # type: ignore[operator]
    js = conn.nc.jetstream(timeout=5)
    scheduler = durable_consumers()["scheduler"][0]
    before = (await nc.jetstream().consumer_info("JOBS", scheduler.durable)).config
    name = f"gateway-test-{uuid.uuid4().hex[:8]}"
    body = {
        "stream_name": "JOBS",
        "config": {
            "name": scheduler.durable,
            "durable_name": scheduler.durable,
            "filter_subject": "job.>",
            "ack_policy": "none",
            "deliver_policy": "new",
        },
    }
    reply = await conn.nc.request(f"$JS.API.CONSUMER.CREATE.JOBS.{name}", orjson.dumps(body), 5)
    assert "error" in orjson.loads(reply.data)  # the subject's name and the body's differ
    # Its own consumer works: created, read, deleted.
    info = await js.add_consumer(
        "JOBS",
        ConsumerConfig(
            name=name,
            filter_subject=f"job.{uuid.uuid4()}.>",
            ack_policy=AckPolicy.NONE,
            inactive_threshold=10,
        ),
    )
    assert info.name == name
    sub = await js.pull_subscribe_bind(name, "JOBS")
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(1, timeout=0.2)
    await js.delete_consumer("JOBS", name)
    assert (await nc.jetstream().consumer_info("JOBS", scheduler.durable)).config == before
    # ...and an unnamed create (the server would let its body name a durable) is refused.
    await conn.nc.publish("$JS.API.CONSUMER.CREATE.JOBS", orjson.dumps(body))
    await conn.nc.flush()
    await eventually(
        lambda: conn.refused("$JS.API.CONSUMER.CREATE.JOBS"), what="the unnamed create refused"
    )
