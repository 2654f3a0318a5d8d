"""A platform on a 3-node NATS cluster on loopback, with two processes of every service:
the shape of ``deploy/compose.yml``, on one machine. Everything runs under one supervisor,
so a test can kill and restart any node or service."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import nats.js.errors
from puras_cli.engines import NatsServer, free_port, provision_postgres
from puras_cli.platform import MODULES, START_ORDER, PlatformConfig
from puras_cli.supervisor import Supervisor
from puras_cli.up import wait_ready
from puras_common.access import SERVICES, STATEFUL, Credentials
from puras_common.bus import connect_nats
from puras_common.consumers import provision_bus
from puras_testing import Infra

LISTENERS = {"gateway": "GATEWAY", "deployments": "DEPLOYMENTS", "drive": "DRIVE"}


@dataclass
class Cluster:
    supervisor: Supervisor
    config: PlatformConfig
    nodes: list[NatsServer]
    database_dsn: str
    """A superuser connection to the cluster platform's own database."""
    gateways: list[str]
    root: Path

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.credentials.admin_token}"}


def _nats_url(nodes: list[NatsServer], user: str) -> str:
    return ",".join(node.url(user) for node in nodes)


async def _streams_with_three_replicas(url: str, env: dict[str, str]) -> None:
    """Until the cluster has elected its JetStream leader and holds every stream (and every
    consumer) as R3."""
    nc = await connect_nats(url, name="cluster-setup")
    try:
        for attempt in range(100):
            try:
                await provision_bus(nc.jetstream(timeout=5), replicas=3, env={**os.environ, **env})
                return
            except (nats.errors.TimeoutError, nats.js.errors.Error) as exc:
                if attempt == 99:
                    raise
                del exc
                await asyncio.sleep(0.3)
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def cluster_platform(infra: Infra, *, extra_env: dict[str, str]) -> AsyncIterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="puras-cluster-"))
    root.chmod(0o711)
    creds = Credentials.generate()
    logs = root / "logs"
    logs.mkdir()
    files: dict[str, object] = {}

    def write(name: str, line: bytes) -> None:
        out = files.get(name)
        if out is None:
            out = files[name] = open(logs / f"{name}.log", "a")
        out.write(line.decode("utf-8", errors="replace"))  # type: ignore[attr-defined]

    supervisor = Supervisor(out=open(os.devnull, "w"), color=False, on_line=write)
    ports = [free_port() for _ in range(3)]
    routes = [free_port() for _ in range(3)]
    nodes = [
        NatsServer(
            store_dir=root / f"nats-{i + 1}",
            users=creds.nats_users(),
            port=ports[i],
            server_name=f"nats-{i + 1}",
            cluster_port=routes[i],
            routes=[r for j, r in enumerate(routes) if j != i],
        )
        for i in range(3)
    ]
    database = f"puras_cluster_{os.getpid()}"
    try:
        for i, node in enumerate(nodes):
            supervisor.add(f"nats-{i + 1}", node.prepare(), {}, ready=node.ready)
        await asyncio.gather(*(supervisor.start_and_wait(f"nats-{i + 1}") for i in range(3)))
        await _streams_with_three_replicas(_nats_url(nodes, "admin"), extra_env)
        dsns = await provision_postgres(
            infra.admin_database_url,
            database=database,
            passwords={s: creds.postgres[s] for s in STATEFUL},
            role_prefix=f"pc{os.getpid()}",
        )
        home = root / "home"
        home.mkdir()
        home.chmod(0o711)
        listener_ports = {name: [free_port(), free_port()] for name in LISTENERS}
        config = PlatformConfig(
            home=home,
            credentials=creds,
            nats_urls={name: _nats_url(nodes, name) for name in (*SERVICES, "admin")},
            database_urls=dsns,
            ports={name: pair[0] for name, pair in listener_ports.items()},
            extra_env={"PURAS_STREAM_REPLICAS": "3", "PURAS_LOG_LEVEL": "INFO", **extra_env},
        )
        for service in START_ORDER:
            for replica in (1, 2):
                name = service if replica == 1 else f"{service}-2"
                env = config.env_for(service, name=name)
                if service in LISTENERS and replica == 2:
                    env[f"PURAS_{LISTENERS[service]}_PORT"] = str(listener_ports[service][1])
                supervisor.add(name, [sys.executable, "-m", MODULES[service]], env)
        await supervisor.start_all()
        await wait_ready(config, timeout=120)
        base, _, _ = infra.admin_database_url.rpartition("/")
        yield Cluster(
            supervisor=supervisor,
            config=config,
            nodes=nodes,
            database_dsn=f"{base}/{database}",
            gateways=[f"http://127.0.0.1:{p}" for p in listener_ports["gateway"]],
            root=root,
        )
    finally:
        services = [n for n in supervisor.children if not n.startswith("nats-")]
        await supervisor.stop(grace=15, only=services)
        await supervisor.stop(grace=15)
        for out in files.values():
            out.close()  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(infra.admin_database_url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            finally:
                await conn.close()
        if os.environ.get("PURAS_TEST_KEEP"):
            print(f"\nPURAS_TEST_KEEP: cluster logs kept in {logs}")
        else:
            shutil.rmtree(root, ignore_errors=True)


async def wait_gateways(cluster: Cluster) -> None:
    async with httpx.AsyncClient() as http:
        for url in cluster.gateways:
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{url}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
