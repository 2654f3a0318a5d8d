"""Many SSE connections from few processes: raw asyncio sockets (httpx costs too much memory
per connection at 20k), HTTP/1.1 chunked decoding, and the receive time of every marked event.

A marked event is a ``log`` event whose text is ``T<publish time in ns>``; the delivery latency
is receive time − publish time (one host, one clock).
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


async def hold_stream(
    url: str, key: str, job_id: str, tally: Tally, stop: asyncio.Event, connected: asyncio.Event
) -> None:
    parts = urlsplit(url)
    try:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port, limit=1 << 20)
    except OSError:
        tally.failed += 1
        connected.set()
        return
    writer.write(
        (
            f"GET /v1/jobs/{job_id}/stream HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {key}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
    )
    try:
        status = await reader.readline()
        if b" 200 " not in status:
            tally.failed += 1
            return
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        tally.connected += 1
        connected.set()
        buffer = b""
        reading = asyncio.ensure_future(_read_chunk(reader))
        stopping = asyncio.ensure_future(stop.wait())
        while True:
            done, _ = await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping in done:
                reading.cancel()
                break
            chunk = reading.result()
            if not chunk:
                stopping.cancel()
                break
            now = time.time_ns()
            buffer += chunk
            *frames, buffer = buffer.split(b"\n\n")
            for frame in frames:
                if (m := MARK.search(frame)) is not None:
                    tally.latencies_ms.append((now - int(m.group(1))) / 1e6)
            reading = asyncio.ensure_future(_read_chunk(reader))
    except (OSError, asyncio.IncompleteReadError):
        tally.failed += 1
    finally:
        connected.set()
        writer.close()


async def _read_chunk(reader: asyncio.StreamReader) -> bytes:
    """One chunk of a chunked HTTP/1.1 body (b"" at the end)."""
    size_line = await reader.readline()
    if not size_line:
        return b""
    size = int(size_line.split(b";")[0].strip() or b"0", 16)
    if size == 0:
        return b""
    data = await reader.readexactly(size + 2)
    return data[:-2]


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
