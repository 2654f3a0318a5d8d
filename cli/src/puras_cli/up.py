"""``puras up``: the whole platform on one machine.

NATS (JetStream) and PostgreSQL start from the embedded wheels under ``.puras/`` unless
``PURAS_NATS_URL`` / ``PURAS_DATABASE_URL`` name running ones; each service gets its own NATS
user and PostgreSQL role; every service runs under one supervisor; the workspace ``local`` is
created with credit and the example project deployed, once; Ctrl-C stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import orjson
from puras_common.access import STATEFUL
from puras_common.bus import connect_nats
from puras_common.consumers import provision_bus
from puras_jobhost import overlay

from puras_cli.bundles import zip_project
from puras_cli.engines import NatsServer, PostgresServer, provision_postgres
from puras_cli.home import Home
from puras_cli.platform import MODULES, START_ORDER, PlatformConfig, runner_caches
from puras_cli.supervisor import Supervisor, sweep

DATABASE = "puras"


ENGINES: Final = ("nats", "postgres")
"""The supervisor's names for the embedded engines; they start first and stop last."""


@dataclass
class Engines:
    nats: NatsServer | None = None
    postgres: PostgresServer | None = None
    nats_urls: dict[str, str] = field(default_factory=dict)
    database_urls: dict[str, str] = field(default_factory=dict)


def stop_grace() -> float:
    """Seconds a service has to stop before SIGKILL: by default 5 s more than its runners may
    drain (``PURAS_DRAIN_SECONDS``, 30), so a drain is never cut short by the kill."""
    drain = float(os.environ.get("PURAS_DRAIN_SECONDS", "30"))
    return float(os.environ.get("PURAS_STOP_GRACE_SECONDS", str(drain + 5)))


async def start_engines(home: Home, say: Callable[[str], None], supervisor: Supervisor) -> Engines:
    """NATS and PostgreSQL under the supervisor (restarted if they die), unless the environment
    names running ones; then the roles, schemas and streams."""
    creds = home.credentials()
    engines = Engines()
    external_nats = os.environ.get("PURAS_NATS_URL")
    if external_nats:
        engines.nats_urls = {name: external_nats for name in (*MODULES, "admin")}
        say(f"using NATS at {external_nats.split('@')[-1]}")
    else:
        ports = home.ports(("nats",), {})
        nats = NatsServer(
            store_dir=home.path / "nats", users=creds.nats_users(), port=ports["nats"]
        )
        supervisor.add("nats", nats.prepare(), {}, ready=nats.ready)
        await supervisor.start_and_wait("nats", timeout=30)
        engines.nats = nats
        engines.nats_urls = {name: nats.url(name) for name in (*MODULES, "admin")}
        say(f"NATS JetStream on 127.0.0.1:{nats.port} (data in {home.path / 'nats'})")
    admin_dsn = os.environ.get("PURAS_DATABASE_URL")
    if admin_dsn:
        say(f"using PostgreSQL at {admin_dsn.split('@')[-1]}")
    else:
        ports = home.ports(("postgres",), {})
        postgres = PostgresServer(
            data_dir=home.path / "pg",
            admin_password=creds.postgres["admin"],
            port=ports["postgres"],
        )
        await postgres.prepare()
        uid, gid = postgres.owner() or (None, None)
        # SIGINT is PostgreSQL's fast shutdown: it does not wait for clients to leave.
        supervisor.add(
            "postgres",
            postgres.argv(),
            {},
            stop_signal=signal.SIGINT,
            user=uid,
            group=gid,
            ready=postgres.ready,
        )
        await supervisor.start_and_wait("postgres", timeout=120)
        engines.postgres = postgres
        admin_dsn = postgres.dsn()
        say(f"PostgreSQL on 127.0.0.1:{postgres.port} (data in {home.path / 'pg'})")
    engines.database_urls = await provision_postgres(
        admin_dsn, database=DATABASE, passwords={s: creds.postgres[s] for s in STATEFUL}
    )
    nc = await connect_nats(engines.nats_urls["admin"], name="puras-up")
    try:
        await provision_bus(nc.jetstream())
    finally:
        await nc.close()
    return engines


async def stop_all(
    supervisor: Supervisor, *, grace: float | None = None, home: Path | None = None
) -> None:
    """The services first (each drains within the grace), then the engines; with ``home`` (the
    state folder), what a runner stopped by force left mounted there is let go in between."""
    grace = stop_grace() if grace is None else grace
    services = [n for n in supervisor.children if n not in ENGINES]
    await supervisor.stop(grace=grace, order=list(reversed(START_ORDER)), only=services)
    if home is not None:
        _release_runner_mounts(home)
    await supervisor.stop(grace=grace)


def _release_runner_mounts(home: Path) -> None:
    """Let go of what the runners left under the state folder ``home`` once they have stopped:
    a runner killed at the end of its grace leaves its jobs' drive overlays, its scratch and the
    work folder's shared bind mounted, which only the next runner to start would release."""
    for cache in runner_caches(home):
        overlay.release_gone(cache / "work")


def platform_config(home: Home, engines: Engines) -> PlatformConfig:
    ports = home.ports(
        ("gateway", "deployments", "drive", *(f"ops-{s}" for s in MODULES)), {"gateway": 8080}
    )
    return PlatformConfig(
        home=home.path,
        credentials=home.credentials(),
        nats_urls=engines.nats_urls,
        database_urls=engines.database_urls,
        ports=ports,
        public_url=os.environ.get("PURAS_PUBLIC_URL"),
    )


def supervise(config: PlatformConfig, supervisor: Supervisor) -> None:
    for service in START_ORDER:
        supervisor.add(service, [sys.executable, "-m", MODULES[service]], config.env_for(service))


async def wait_ready(config: PlatformConfig, *, timeout: float = 60.0) -> None:
    """Until every service answers its health check and the gateway serves HTTP."""
    nc = await connect_nats(config.nats_urls["admin"], name="puras-up-health")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        pending = set(MODULES)
        while pending:
            for service in list(pending):
                with contextlib.suppress(Exception):
                    reply = await nc.request(f"svc.{service}.health", b"", timeout=0.5)
                    if orjson.loads(reply.data).get("status") == "ok":
                        pending.discard(service)
            if pending and loop.time() > deadline:
                raise TimeoutError(
                    f"services not healthy after {timeout:.0f}s: {', '.join(sorted(pending))}"
                )
            if pending:
                await asyncio.sleep(0.2)
    finally:
        await nc.close()
    async with httpx.AsyncClient() as http:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"{config.gateway_url}/healthz")).status_code == 200:
                    return
            if loop.time() > deadline:
                raise TimeoutError("gateway did not answer /healthz")
            await asyncio.sleep(0.2)


async def bootstrap(
    home: Home, config: PlatformConfig, *, examples: Path | None, say: Callable[[str], None]
) -> dict[str, Any]:
    """The ``local`` workspace and its key (created once), and the example project (pushed once)."""
    local = home.local()
    async with httpx.AsyncClient(base_url=config.gateway_url, timeout=120.0) as http:
        if "api_key" not in local:
            response = await http.post(
                "/v1/admin/workspaces",
                json={"slug": "local", "name": "Local workspace", "credit_usd": "10"},
                headers={"Authorization": f"Bearer {config.credentials.admin_token}"},
            )
            if response.status_code != 201:
                raise RuntimeError(f"could not create workspace 'local': {response.text}")
            created = response.json()
            local = {"workspace": "local", "api_key": created["api_key"]}
            home.save_local(local)
            say("created workspace 'local' with $10.00 of credit")
        if "login" not in local:
            local["login"] = await _create_login(http, config)
            home.save_local(local)
            say(f"created the console login {local['login']['email']}")
        if examples is not None and not local.get("examples_deployed"):
            response = await http.post(
                "/v1/deployments",
                files={"bundle": ("quickstart.zip", zip_project(examples), "application/zip")},
                data={"notes": "example project, deployed by puras up"},
                headers={"Authorization": f"Bearer {local['api_key']}"},
            )
            if response.status_code not in (201, 202):
                raise RuntimeError(f"could not deploy {examples}: {response.text}")
            local["examples_deployed"] = response.json()["id"]
            home.save_local(local)
            say(f"deployed {examples} as version {response.json()['version']}")
    return local


LOCAL_LOGIN = "admin@puras.local"
"""The console's first user, an owner of the ``local`` workspace."""


async def _create_login(http: httpx.AsyncClient, config: PlatformConfig) -> dict[str, str]:
    response = await http.post(
        "/v1/admin/workspaces/local/users",
        json={"email": LOCAL_LOGIN, "role": "owner", "reset_password": True},
        headers={"Authorization": f"Bearer {config.credentials.admin_token}"},
    )
    if response.status_code not in (200, 201):
        raise RuntimeError(f"could not create the console login: {response.text}")
    return {"email": LOCAL_LOGIN, "password": response.json()["password"]}


def banner(config: PlatformConfig, local: dict[str, Any], home: Home) -> str:
    key = local["api_key"]
    login = local["login"]
    return "\n".join(
        [
            "",
            "Puras is ready.",
            f"  gateway  {config.gateway_url}",
            f"  API key  {key}   (saved in {home.path / 'local.json'})",
            f"  console  {config.gateway_url}/console",
            f"           sign in as {login['email']}, password {login['password']}",
            "",
            "  Run the example echo skill:",
            f"    curl -X POST '{config.gateway_url}/v1/jobs?wait=true' \\",
            f"      -H 'Authorization: Bearer {key}' \\",
            """      -d '{"skill":"echo","inputs":{"text":"hello"}}'""",
            "",
            "  Ctrl-C stops everything; the next `make run` keeps the data.",
            "",
        ]
    )


async def up(*, examples: Path | None) -> int:
    home = Home()
    home.ensure()

    def say(text: str) -> None:
        print(f"puras: {text}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pidfile = home.path / "supervisor.json"
    if left := sweep(pidfile):
        say(f"stopped what a previous run left running: {', '.join(left)}")
    supervisor = Supervisor(pidfile=pidfile)
    try:
        engines = await start_engines(home, say, supervisor)
        config = platform_config(home, engines)
        supervise(config, supervisor)
        await supervisor.start_all()
        ready = asyncio.create_task(wait_ready(config))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            ready.cancel()
            return 0
        ready.result()
        local = await bootstrap(home, config, examples=examples, say=say)
        print(banner(config, local, home), flush=True)
        await stop.wait()
        say("stopping")
        return 0
    finally:
        await stop_all(supervisor, home=home.path)
        pidfile.unlink(missing_ok=True)
        say("stopped")
