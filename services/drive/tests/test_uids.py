"""A uid per workspace: from the configured range, lowest free first, one per workspace and the
same one after a restart; a full range is a clear error, never a shared uid."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from puras_common.migrate import service_migrations
from puras_drive import uids as uids_module
from puras_drive.uids import UidRangeExhausted, WorkspaceUids
from puras_testing import Infra, Scratch, scratch_schema

pytestmark = pytest.mark.asyncio(loop_scope="session")

BASE = 3_000_000


@pytest_asyncio.fixture(loop_scope="session")
async def db(infra: Infra) -> AsyncIterator[Scratch]:
    async with scratch_schema(
        infra.admin_database_dsn, service_migrations("drive", uids_module.__file__)
    ) as s:
        yield s


async def test_each_workspace_gets_its_own_uid_from_the_range(db: Scratch) -> None:
    uids = WorkspaceUids(db.pool, base=BASE, count=10)
    a, b = uuid.uuid4(), uuid.uuid4()
    first, second = await uids.uid_for(a), await uids.uid_for(b)
    assert (first, second) == (BASE, BASE + 1)
    assert await uids.uid_for(a) == first and uids.known(a) == first


async def test_the_assignment_survives_a_restart(db: Scratch) -> None:
    before = WorkspaceUids(db.pool, base=BASE, count=10)
    workspaces = [uuid.uuid4() for _ in range(3)]
    assigned = [await before.uid_for(w) for w in workspaces]
    after = WorkspaceUids(db.pool, base=BASE, count=10)  # a new process
    assert after.known(workspaces[0]) is None
    await after.load()
    assert [after.known(w) for w in workspaces] == assigned
    fresh = WorkspaceUids(db.pool, base=BASE, count=10)  # asked before it loaded anything
    assert [await fresh.uid_for(w) for w in reversed(workspaces)] == list(reversed(assigned))


async def test_a_full_range_is_a_clear_error_and_shares_no_uid(db: Scratch) -> None:
    uids = WorkspaceUids(db.pool, base=BASE, count=2)
    kept = [await uids.uid_for(uuid.uuid4()) for _ in range(2)]
    assert kept == [BASE, BASE + 1]
    with pytest.raises(UidRangeExhausted) as refused:
        await uids.uid_for(uuid.uuid4())
    assert "all 2 job uids (3000000..3000001)" in str(refused.value)
    assert "PURAS_SANDBOX_UID_COUNT" in str(refused.value)
    rows = await db.pool.fetchval("SELECT count(*) FROM workspace_uids")
    assert rows == 2


async def test_workspaces_assigned_at_once_never_share_a_uid(db: Scratch) -> None:
    # Each process its own cache, as several drive replicas would have.
    workspaces = [uuid.uuid4() for _ in range(12)]
    got = await asyncio.gather(
        *(WorkspaceUids(db.pool, base=BASE, count=12).uid_for(w) for w in workspaces),
        *(WorkspaceUids(db.pool, base=BASE, count=12).uid_for(w) for w in workspaces[:4]),
    )
    assert sorted(set(got[:12])) == list(range(BASE, BASE + 12))
    assert got[12:] == got[:4]


async def test_a_range_must_be_unprivileged_and_fit(db: Scratch) -> None:
    for base, count in ((0, 10), (999, 10), (BASE, 0), (2**31 - 5, 10)):
        with pytest.raises(ValueError, match="PURAS_SANDBOX_UID_BASE"):
            WorkspaceUids(db.pool, base=base, count=count)
