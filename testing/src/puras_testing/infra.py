"""Private servers for one test session.

By default a nats-server (JetStream, per-service users) and a PostgreSQL cluster are started
from the embedded wheels on free ports below 32768, in temporary directories, and stopped in
``finally``. ``PURAS_TEST_NATS_URL`` (an admin URL) and ``PURAS_TEST_DATABASE_URL`` (a superuser
URL) point the suite at running servers instead; then per-service NATS permissions are not
enforced, because the external server's users are not ours to define. ``PURAS_TEST_KEEP=1`` keeps
the session's directory (service logs under ``logs/``) for a look after a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from puras_cli.engines import NatsServer, PostgresServer, provision_postgres
from puras_common.access import STATEFUL, Credentials, new_password


@dataclass
class Infra:
    """Where the session's NATS and PostgreSQL are, and each service's credentials."""

    credentials: Credentials
    nats: NatsServer | None
    postgres: PostgresServer | None
    external_nats_url: str | None = None
    admin_database_url: str = ""
    database: str = ""
    service_dsns: dict[str, str] = field(default_factory=dict)
    root: Path = Path()

    @property
    def enforces_permissions(self) -> bool:
        return self.nats is not None

    def nats_url(self, user: str = "admin") -> str:
        if self.nats is None:
            assert self.external_nats_url
            return self.external_nats_url
        return self.nats.url(user)

    def database_url(self, service: str) -> str:
        return self.service_dsns[service]

    @property
    def admin_database_dsn(self) -> str:
        """A superuser DSN on the session's database."""
        base, _, _ = self.admin_database_url.rpartition("/")
        return f"{base}/{self.database}"

    def service_env(self, service: str) -> dict[str, str]:
        """The environment a service process of this session starts with."""
        c = self.credentials
        env = {
            "PURAS_NATS_URL": self.nats_url(service),
            **c.secrets_env(service),
        }
        if service in self.service_dsns:
            env["PURAS_DATABASE_URL"] = self.service_dsns[service]
        return env


@contextlib.asynccontextmanager
async def start_infra(*, role_prefix: str = "puras") -> AsyncIterator[Infra]:
    """Start (or attach to) NATS and PostgreSQL and provision one database for the session."""
    credentials = Credentials.generate()
    # A directory the unprivileged postgres user can traverse (pytest's tmp dirs are 0700).
    root = Path(tempfile.mkdtemp(prefix="puras-test-"))
    os.chmod(root, 0o711)
    nats: NatsServer | None = None
    postgres: PostgresServer | None = None
    try:
        external_nats = os.environ.get("PURAS_TEST_NATS_URL")
        if not external_nats:
            nats = NatsServer(store_dir=root / "nats", users=credentials.nats_users())
            await nats.start()
        external_pg = os.environ.get("PURAS_TEST_DATABASE_URL")
        if external_pg:
            admin_url = external_pg
            role_prefix = f"puras_t{new_password()[:6].lower().replace('-', '').replace('_', '')}"
        else:
            postgres = PostgresServer(
                data_dir=root / "pg", admin_password=credentials.postgres["admin"]
            )
            await postgres.start()
            admin_url = postgres.dsn()
        database = f"puras_test_{os.getpid()}"
        dsns = await provision_postgres(
            admin_url,
            database=database,
            passwords={s: credentials.postgres[s] for s in STATEFUL},
            role_prefix=role_prefix,
        )
        yield Infra(
            credentials=credentials,
            nats=nats,
            postgres=postgres,
            external_nats_url=external_nats,
            admin_database_url=admin_url,
            database=database,
            service_dsns=dsns,
            root=root,
        )
    finally:
        if nats is not None:
            await nats.stop()
        if postgres is not None:
            await postgres.stop()
        if os.environ.get("PURAS_TEST_KEEP"):
            print(f"\nPURAS_TEST_KEEP: test state and service logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
