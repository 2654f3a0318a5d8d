"""What PostgreSQL does per job, by table: over an echo throughput run, the rows each table
gave up (read by a sequential scan, or fetched through an index), its scans and its writes, and
the database's commits, each divided by the jobs. Counts of work, not times, so a noisy machine
still shows what a change took away.

    .venv/bin/python bench/db_reads.py [-n JOBS] [--top K]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
import workloads
from harness import platform

_TABLES = """
SELECT schemaname || '.' || relname AS name, seq_scan, seq_tup_read, idx_scan, idx_tup_fetch,
       n_tup_ins, n_tup_upd
FROM pg_stat_user_tables
"""
_DATABASE = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"


async def _counts(dsn: str) -> tuple[dict[str, dict[str, int]], int]:
    conn = await asyncpg.connect(dsn)
    try:
        # Statistics are read from a snapshot taken once per transaction: a fresh one each time.
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        tables = {r["name"]: dict(r) for r in await conn.fetch(_TABLES)}
        return tables, await conn.fetchval(_DATABASE)
    finally:
        await conn.close()


async def main(n: int, top: int) -> None:
    async with platform() as running:
        key = await running.workspace("reads")
        await running.push(key, Path(__file__).parent / "projects" / "echo")
        await workloads.echo_throughput(running, key, n=100)  # caches, plans, pools warmed
        dsn = next(iter(running.engines.database_urls.values()))
        await asyncio.sleep(1.5)  # backends report their counts at most once a second
        before, commits_before = await _counts(dsn)
        result = await workloads.echo_throughput(running, key, n=n)
        await asyncio.sleep(1.5)
        after, commits_after = await _counts(dsn)
    rows = []
    for name, counts in after.items():
        if name not in before:
            continue
        per_job = {k: (v - before[name][k]) / n for k, v in counts.items() if k != "name"}
        rows.append((per_job["seq_tup_read"] + per_job["idx_tup_fetch"], name, per_job))
    print(f"{result['jobs_per_s']:.0f} jobs/s over {n} jobs")
    print(f"commits per job: {(commits_after - commits_before) / n:.1f}")
    print(f"{'table':<28} {'rows read':>9} {'seq scans':>9} {'idx scans':>9} {'written':>8}")
    for read, name, c in sorted(rows, reverse=True)[:top]:
        written = c["n_tup_ins"] + c["n_tup_upd"]
        print(f"{name:<28} {read:9.1f} {c['seq_scan']:9.2f} {c['idx_scan']:9.1f} {written:8.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.top))
