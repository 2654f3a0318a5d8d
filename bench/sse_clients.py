"""Many SSE connections from few processes, each a bare asyncio protocol: no task, no stream
reader and no HTTP client per connection, so the load generator spends a few microseconds on
an event and leaves the cores to the gateway it measures.

A marked event is a ``log`` event whose text is ``T<publish time in ns>``; the delivery latency
is receive time − publish time (one host, one clock). Frames are found by their blank-line
ends, so the chunked encoding's size lines between them need no decoding.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MARK = re.compile(rb'"text":"T(\d+)"')


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    connected: int = 0
    failed: int = 0


class _Stream(asyncio.Protocol):
    """One SSE connection: sends the request, checks the status, times every marked frame."""

    def __init__(self, request: bytes, tally: Tally) -> None:
        self.request = request
        self.tally = tally
        self.buffer = b""
        self.streaming = False
        self.answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buffer = self.buffer + data
        if not self.streaming:
            head, sep, rest = buffer.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = buffer
                return
            self.streaming = b" 200 " in head.split(b"\r\n", 1)[0]
            if not self.answered.done():
                self.answered.set_result(self.streaming)
            if not self.streaming:
                self.buffer = b""
                return
            buffer = rest
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self.buffer = buffer
            return
        for mark in MARK.finditer(buffer, 0, end):
            self.tally.latencies_ms.append((now - int(mark.group(1))) / 1e6)
        self.buffer = buffer[end + 2 :]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_result(False)
        if not self.closed.done():
            self.closed.set_result(None)


async def hold_stream(
    url: str, key: str, job_id: str, tally: Tally, stop: asyncio.Event, connected: asyncio.Event
) -> None:
    """Hold the job's stream open until ``stop``; ``connected`` is set once it answered (or
    failed to)."""
    parts = urlsplit(url)
    request = (
        f"GET /v1/jobs/{job_id}/stream HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    try:
        transport, stream = await loop.create_connection(
            lambda: _Stream(request, tally), parts.hostname, parts.port
        )
    except OSError:
        tally.failed += 1
        connected.set()
        return
    try:
        if await stream.answered:
            tally.connected += 1
        else:
            tally.failed += 1
        connected.set()
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({stopping, stream.closed}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
    finally:
        connected.set()
        transport.close()


def client_process(
    url: str, key: str, job_ids: list[str], per_job: int, ready, stop_flag, results
) -> None:
    """A worker process: ``per_job`` streams for each job; reports when all are open, then
    records latencies until ``stop_flag`` is set."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def main() -> None:
        tally, stop = Tally(), asyncio.Event()
        tasks = []
        for job_id in job_ids:
            for _ in range(per_job):
                connected = asyncio.Event()
                tasks.append(
                    asyncio.create_task(hold_stream(url, key, job_id, tally, stop, connected))
                )
                await connected.wait()  # one at a time: a steady ramp the server can accept
        ready.put((tally.connected, tally.failed))
        while not stop_flag.is_set():
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        results.put(tally.latencies_ms)

    asyncio.run(main())
