"""Reading a stream's stored messages without a consumer: JetStream's batched direct get.

One request (``$JS.API.DIRECT.GET.<stream>``, nats-server 2.11 or later, on a stream with
``allow_direct``) answers with up to ``batch`` stored messages, each carrying its sequence, then
an end-of-batch status (``204 EOB``) that says how many more match; ``404`` when none does. The
server reads the batch under the stream's read lock, so it is a consistent cut of the stream.
A consumer made for the same read costs a create, a fetch and a delete, each a request, and in a
cluster the create and the delete go through the meta group.

On a replicated stream any replica that is nearly caught up may answer, so a read may miss the
newest messages a lagging replica has not applied yet, as a consumer placed on that replica
would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

BATCH: Final = 256
"""Messages asked for in one request."""

MAX_BYTES: Final = 1 << 20
"""Bytes asked for in one request: the server stops after the message that passes it."""

MIN_SERVER: Final = (2, 11)
"""The first nats-server version that answers a batched direct get."""


class DirectGetError(RuntimeError):
    """The server refused a direct get (a status other than ``204`` or ``404``), or answered
    without what a batch answer carries."""


def check_server(nc: NATS) -> None:
    """Refuse a server too old for batched direct gets, at start rather than at the first read:
    it would answer one message of a batch and leave the reader waiting for the rest."""
    version = nc.connected_server_version
    if (version.major, version.minor) < MIN_SERVER:
        need = ".".join(map(str, MIN_SERVER))
        raise RuntimeError(
            f"nats-server {version} cannot read a stream in batches (direct get); "
            f"{need} or later is needed"
        )


async def _ask(
    nc: NATS, stream: str, request: dict[str, Any], *, timeout: float
) -> tuple[list[tuple[int, bytes]], int]:
    """One direct get: the ``(sequence, data)`` of each message it answered with, in order, and
    how many more match after them (the end of batch's ``Nats-Num-Pending``)."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(f"$JS.API.DIRECT.GET.{stream}", orjson.dumps(request), reply=inbox)
        found: list[tuple[int, bytes]] = []
        while True:
            msg: Msg = await sub.next_msg(timeout=timeout)
            headers = msg.headers or {}
            status = headers.get("Status")
            if status == "404":
                return found, 0
            if status == "204":
                return found, int(headers.get("Nats-Num-Pending", 0))
            if status is not None or "Nats-Sequence" not in headers:
                raise DirectGetError(
                    f"direct get on {stream} answered {status or 'a message without a sequence'}"
                    f" {headers.get('Description', '')}".rstrip()
                )
            found.append((int(headers["Nats-Sequence"]), msg.data))
    finally:
        await sub.unsubscribe()


async def stored_after(
    nc: NATS, stream: str, subject: str, *, after: int, timeout: float = 5.0
) -> list[tuple[int, bytes]]:
    """The ``(sequence, data)`` of every message of ``stream`` on ``subject`` (wildcards allowed)
    stored after sequence ``after``, in order, read in batches."""
    out: list[tuple[int, bytes]] = []
    start = after + 1
    while True:
        request = {"seq": start, "next_by_subj": subject, "batch": BATCH, "max_bytes": MAX_BYTES}
        found, pending = await _ask(nc, stream, request, timeout=timeout)
        out += found
        if not found or not pending:
            return out
        start = found[-1][0] + 1


async def last_sequences(
    nc: NATS, stream: str, subjects: Sequence[str], *, timeout: float = 5.0
) -> list[int]:
    """The sequence of the last message stored on each of ``subjects``; a subject with none has
    no entry. One request."""
    request = {"multi_last": list(subjects), "batch": len(subjects)}
    found, _ = await _ask(nc, stream, request, timeout=timeout)
    return [seq for seq, _ in found]
