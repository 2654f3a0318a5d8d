"""Plain-SQL migrations, applied in order at start under an advisory lock.

Each service keeps ``migrations/NNNN_name.sql``; the common tables (outbox, inbox) come first
from this package. An applied file must never change: its checksum is kept and checked.

A file may be renamed (to give it a number of its own): a pending file whose checksum matches a
file applied under a name that is gone from the directory is that file, and its record takes
the new name instead of the file running twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg


class MigrationChanged(RuntimeError):
    """An applied migration file was edited afterwards."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"migration {name} was changed after it was applied; add a new file instead"
        )
        self.name = name


@dataclass(frozen=True)
class MigrationSource:
    """A namespace (``common``, ``gateway``) and the directory of its ``*.sql`` files."""

    namespace: str
    directory: Path


def common_migrations() -> MigrationSource:
    """The tables every service schema has: outbox, outbox cursor, inbox."""
    return MigrationSource("common", Path(str(resources.files("puras_common") / "sql")))


def service_migrations(namespace: str, package_file: str) -> MigrationSource:
    """A service's ``migrations/`` directory, found from its package's ``__file__``.

    In a built wheel the directory sits inside the package; in the source tree, beside ``src/``.
    """
    package_dir = Path(package_file).resolve().parent
    for candidate in (package_dir / "migrations", package_dir.parents[1] / "migrations"):
        if candidate.is_dir():
            return MigrationSource(namespace, candidate)
    raise FileNotFoundError(f"no migrations directory for {namespace} near {package_dir}")


async def migrate(
    conn: asyncpg.Connection, *, schema: str, sources: list[MigrationSource]
) -> list[str]:
    """Apply every pending file in order; returns the names applied. Safe with replicas."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"puras-migrate:{schema}")
    try:
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   name text PRIMARY KEY,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            r["name"]: r["checksum"]
            for r in await conn.fetch("SELECT name, checksum FROM schema_migrations")
        }
        for source in sources:
            applied_now += await _apply_pending(conn, source, done)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"puras-migrate:{schema}")
    return applied_now


async def _apply_pending(
    conn: asyncpg.Connection, source: MigrationSource, done: dict[str, str]
) -> list[str]:
    files = sorted(source.directory.glob("*.sql"))
    present = {f"{source.namespace}/{path.name}" for path in files}
    renamed_from = {
        checksum: name
        for name, checksum in done.items()
        if name.startswith(f"{source.namespace}/") and name not in present
    }
    applied: list[str] = []
    for path in files:
        name = f"{source.namespace}/{path.name}"
        sql = path.read_text()
        checksum = hashlib.sha256(sql.encode()).hexdigest()
        if name in done:
            if done[name] != checksum:
                raise MigrationChanged(name)
            continue
        if (old := renamed_from.pop(checksum, None)) is not None:
            await conn.execute("UPDATE schema_migrations SET name = $1 WHERE name = $2", name, old)
            continue
        async with conn.transaction():
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)", name, checksum
            )
        applied.append(name)
    return applied
