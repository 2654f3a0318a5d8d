"""Renumbering an applied migration file does not run it again."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
from puras_common.migrate import MigrationSource, migrate


async def _fresh_schema(admin_db: asyncpg.Connection) -> str:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    await admin_db.execute(f'CREATE SCHEMA "{schema}"')
    return schema


async def test_a_renumbered_migration_is_recorded_under_its_new_name_not_run_again(
    admin_db: asyncpg.Connection, tmp_path: Path
) -> None:
    schema = await _fresh_schema(admin_db)
    try:
        (tmp_path / "0001_init.sql").write_text("CREATE TABLE a (id int);")
        (tmp_path / "0002_b.sql").write_text("CREATE TABLE b (id int);")
        (tmp_path / "0002_c.sql").write_text("INSERT INTO b VALUES (1);")
        source = MigrationSource("svc", tmp_path)
        first = await migrate(admin_db, schema=schema, sources=[source])
        assert first == ["svc/0001_init.sql", "svc/0002_b.sql", "svc/0002_c.sql"]

        (tmp_path / "0002_c.sql").rename(tmp_path / "0003_c.sql")
        (tmp_path / "0004_d.sql").write_text("INSERT INTO b VALUES (2);")
        second = await migrate(admin_db, schema=schema, sources=[source])

        assert second == ["svc/0004_d.sql"]
        assert sorted(await admin_db.fetchval(f'SELECT array_agg(id) FROM "{schema}".b')) == [1, 2]
        names = await admin_db.fetch(f'SELECT name FROM "{schema}".schema_migrations ORDER BY name')
        assert [r["name"] for r in names] == [
            "svc/0001_init.sql",
            "svc/0002_b.sql",
            "svc/0003_c.sql",
            "svc/0004_d.sql",
        ]
        assert await migrate(admin_db, schema=schema, sources=[source]) == []
    finally:
        await admin_db.execute(f'DROP SCHEMA "{schema}" CASCADE')
