"""Reading stored messages with batched direct gets, against a real JetStream."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.aio.client import ServerVersion
from nats.js.api import StreamConfig
from puras_common import stored
from puras_common.bus import JetStream


async def _stream(js: JetStream, *, allow_direct: bool = True) -> str:
    name = f"T{uuid.uuid4().hex[:10].upper()}"
    await js.add_stream(
        StreamConfig(name=name, subjects=[f"{name.lower()}.>"], allow_direct=allow_direct)
    )
    return name


async def test_every_message_of_a_subject_is_read_in_order_across_batches(
    js: JetStream, nc: NATS, monkeypatch: Any
) -> None:
    """Three messages a request: ten of one subject, interleaved with another's, come whole."""
    monkeypatch.setattr(stored, "BATCH", 3)
    name = await _stream(js)
    prefix = name.lower()
    mine: list[tuple[int, bytes]] = []
    try:
        for n in range(10):
            ack = await js.publish(f"{prefix}.a.e{n}", b"a%d" % n)
            mine.append((ack.seq, b"a%d" % n))
            await js.publish(f"{prefix}.b.e{n}", b"b%d" % n)
        assert await stored.stored_after(nc, name, f"{prefix}.a.>", after=0) == mine
        assert await stored.stored_after(nc, name, f"{prefix}.a.>", after=mine[6][0]) == mine[7:]
        assert await stored.stored_after(nc, name, f"{prefix}.a.>", after=mine[-1][0]) == []
        assert await stored.stored_after(nc, name, f"{prefix}.none.>", after=0) == []
    finally:
        await js.delete_stream(name)


async def test_a_request_stops_at_its_bytes_and_the_next_goes_on(
    js: JetStream, nc: NATS, monkeypatch: Any
) -> None:
    """The server ends a batch after the message that passes ``max_bytes``; the reader asks again
    from there, so nothing is skipped."""
    monkeypatch.setattr(stored, "MAX_BYTES", 1500)
    name = await _stream(js)
    subject = f"{name.lower()}.big"
    try:
        bodies = [bytes([65 + n]) * 1000 for n in range(5)]
        for body in bodies:
            await js.publish(subject, body)
        got = await stored.stored_after(nc, name, subject, after=0)
        assert [data for _, data in got] == bodies
    finally:
        await js.delete_stream(name)


async def test_the_last_of_each_subject_in_one_request(js: JetStream, nc: NATS) -> None:
    name = await _stream(js)
    p = name.lower()
    try:
        await js.publish(f"{p}.x.done", b"1")
        await js.publish(f"{p}.x.other", b"2")
        last = (await js.publish(f"{p}.x.done", b"3")).seq
        other = (await js.publish(f"{p}.y.done", b"4")).seq
        assert await stored.last_sequences(nc, name, [f"{p}.x.done", f"{p}.x.failed"]) == [last]
        assert await stored.last_sequences(nc, name, [f"{p}.x.done", f"{p}.y.done"]) == [
            last,
            other,
        ]
        assert await stored.last_sequences(nc, name, [f"{p}.z.done"]) == []
    finally:
        await js.delete_stream(name)


async def test_a_stream_without_direct_gets_is_an_error_not_a_silence(
    js: JetStream, nc: NATS
) -> None:
    name = await _stream(js, allow_direct=False)
    try:
        with pytest.raises(stored.DirectGetError, match="503"):
            await stored.stored_after(nc, name, f"{name.lower()}.>", after=0, timeout=2.0)
    finally:
        await js.delete_stream(name)


def test_a_server_too_old_for_batches_is_refused_at_start(nc: NATS) -> None:
    stored.check_server(nc)  # the server the platform runs
    old = SimpleNamespace(connected_server_version=ServerVersion("2.10.22"))
    with pytest.raises(RuntimeError, match=r"2\.11 or later"):
        stored.check_server(old)  # type: ignore[arg-type]
