"""Where PostgreSQL's time goes while a workload runs, statement by statement: polls every
client backend's state (``pg_stat_activity``) as fast as one connection can, and counts the
statements it finds active, by role. A statement's share of the samples is its share of the
time the backends spent running statements (a commit's includes its wait for the WAL's fsync),
so the statements a workload repeats most, or that read most, stand out.

    .venv/bin/python bench/db_activity.py [--workload sync|throughput] [-n JOBS] [--top K]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
import workloads
from harness import platform

_ACTIVE = """
SELECT usename, query FROM pg_stat_activity
WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()
"""


async def _sample(dsn: str, load: asyncio.Task[object]) -> tuple[Counter[tuple[str, str]], int]:
    """Count the active statements by (role, statement) until ``load`` ends; and the polls."""
    seen: Counter[tuple[str, str]] = Counter()
    polls = 0
    conn = await asyncpg.connect(dsn)
    try:
        while not load.done():
            for row in await conn.fetch(_ACTIVE):
                seen[(row["usename"], " ".join(row["query"].split()))] += 1
            polls += 1
    finally:
        await conn.close()
    return seen, polls


async def main(workload: str, n: int, top: int, width: int) -> None:
    async with platform() as running:
        key = await running.workspace("activity")
        await running.push(key, Path(__file__).parent / "projects" / "echo")
        await workloads.sync_round_trip(running, key, m=20)  # caches, plans, pools warmed
        # The superuser sees every role's statements; PURAS_DATABASE_URL names one when the
        # platform runs on an outside PostgreSQL.
        postgres = running.engines.postgres
        dsn = postgres.dsn() if postgres else os.environ["PURAS_DATABASE_URL"]
        run = (
            workloads.sync_round_trip(running, key, m=n)
            if workload == "sync"
            else workloads.echo_throughput(running, key, n=n)
        )
        load = asyncio.ensure_future(run)
        seen, polls = await _sample(dsn, load)
        await load
    total = sum(seen.values())
    print(f"{workload}, {n} jobs: {polls} polls, {total} active statements seen")
    print(f"{'share':>6} {'per poll':>8}  {'role':<18} statement")
    for (role, query), count in seen.most_common(top):
        print(f"{count / total:6.1%} {count / polls:8.3f}  {role:<18} {query[:width]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=("sync", "throughput"), default="sync")
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--width", type=int, default=100, help="characters of each statement")
    args = parser.parse_args()
    asyncio.run(main(args.workload, args.n, args.top, args.width))
