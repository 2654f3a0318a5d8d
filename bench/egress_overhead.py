"""What the egress proxy costs: a networked sandbox with its own namespace and the proxy, against
the host's network shared as it was before.

* **zygote start**: ``ForkServer.start()`` until ready, in bubblewrap (the egress sandbox runs
  one more short Python before the zygote, to open its port and hand it over);
* **spawn -> run()**: a job's warm start from its zygote, as ``sandbox_warm_start.py`` measures
  it (the proxy is not on this path: a job only gets four more environment variables);
* **a request**: one HTTP GET on a new connection to a loopback server, from this process,
  direct and through the proxy (which resolves, decides, connects and relays).

    .venv/bin/python bench/egress_overhead.py [--runs N] [--starts N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from puras_common.logging import configure_logging
from puras_jobhost.egress import PROXY_ENV, EgressPolicy, EgressPort, EgressProxy
from puras_sandbox import ForkServer, Isolation, bwrap_available
from sandbox_warm_start import NOBODY, Bench, _summary, _world_executable


def _server(bench: Bench, *, egress: str | None) -> ForkServer:
    python, uid = sys.executable, None
    if os.geteuid() == 0:
        candidates = [p for p in (sys.executable, "/usr/bin/python3") if _world_executable(p)]
        if candidates:
            python, uid = candidates[0], NOBODY
    iso = Isolation(
        ro_binds=(str(bench.skill),),
        rw_binds=(str(bench.jobs),),
        network=egress is None,
        egress_socket=egress,
    )
    return ForkServer(
        python=python, sys_path=[], preload=("json",), uid=uid, gid=uid, isolation=iso
    )


async def sandbox_mode(bench: Bench, root: Path, *, egress: bool, runs: int, starts: int) -> Any:
    policy = EgressPolicy.build(gateway_url="http://127.0.0.1:1")
    start_ms: list[float] = []
    for _ in range(starts):
        port = EgressPort(root, policy) if egress else None
        fs = _server(bench, egress=port.socket_path if port else None)
        t0 = time.monotonic_ns()
        await fs.start()
        if port is not None:
            await port.ready()
        start_ms.append((time.monotonic_ns() - t0) / 1e6)
        await fs.close()
        if port is not None:
            await port.close()
    port = EgressPort(root, policy) if egress else None
    fs = _server(bench, egress=port.socket_path if port else None)
    await fs.start()
    try:
        return {
            "zygote_start": _summary(start_ms),
            "back_to_back": await bench.latency(fs, runs),
            "spaced_2ms": await bench.latency(fs, runs, pause=0.002),
        }
    finally:
        await fs.close()
        if port is not None:
            await port.close()


async def _get(port: int, request: bytes) -> float:
    t0 = time.monotonic_ns()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    body = await reader.read()
    writer.close()
    if b" 200 " not in body.split(b"\r\n", 1)[0]:
        raise RuntimeError(body[:200])
    return (time.monotonic_ns() - t0) / 1e6


async def request_mode(runs: int) -> dict[str, Any]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    origin = await asyncio.start_server(answer, "127.0.0.1", 0)
    origin_port = origin.sockets[0].getsockname()[1]
    proxy = EgressProxy(
        EgressPolicy.build(gateway_url="http://127.0.0.1:1", test_allow=f"127.0.0.1:{origin_port}")
    )
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    proxy_port = listener.getsockname()[1]
    await proxy.serve(listener)
    direct = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    proxied = f"GET http://127.0.0.1:{origin_port}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    try:
        for _ in range(20):
            await _get(origin_port, direct)
            await _get(proxy_port, proxied)
        return {
            "direct": _summary([await _get(origin_port, direct) for _ in range(runs)]),
            "through_proxy": _summary([await _get(proxy_port, proxied) for _ in range(runs)]),
        }
    finally:
        await proxy.close()
        origin.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="measured jobs/requests per series")
    parser.add_argument("--starts", type=int, default=10, help="zygote starts per series")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    configure_logging("bench", level="WARNING")  # as a runner logs: refusals, not every request
    uid = NOBODY if os.geteuid() == 0 else None
    report: dict[str, Any] = {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()}
    report["request"] = await request_mode(args.runs)
    if bwrap_available(uid, uid):
        with tempfile.TemporaryDirectory(prefix="puras-bench-egress-") as tmp:
            root = Path(tmp)
            egress_root = root / "egress"
            egress_root.mkdir()
            os.chmod(egress_root, 0o711)
            (root / "b").mkdir()
            bench = Bench(root / "b")
            os.chmod(root, 0o755)
            report["host_network"] = await sandbox_mode(
                bench, egress_root, egress=False, runs=args.runs, starts=args.starts
            )
            report["egress"] = await sandbox_mode(
                bench, egress_root, egress=True, runs=args.runs, starts=args.starts
            )
    report["job_env_added"] = sorted(PROXY_ENV)
    report["loadavg_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
