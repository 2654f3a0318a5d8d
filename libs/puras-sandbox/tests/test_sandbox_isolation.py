"""The bubblewrap sandbox: what a job can see, write and reach."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from puras_sandbox import Exec, ForkServer, ForkServerDied, Isolation, Limits, SandboxError
from puras_sandbox.bwrap import _plan_binds
from sandbox_testlib import (
    IS_ROOT,
    NOBODY,
    NOBODY_PYTHON,
    call,
    eventually,
    nobody_dir,
    processes_with_arg,
    skip_without_bwrap,
    write_skill,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

HERE = Path(__file__).resolve()

PROBE = """
    import os, socket
    def run(inputs):
        out = {"uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(),
               "visible": {p: os.path.exists(p) for p in inputs["paths"]}}
        def attempt(path):
            try:
                with open(path, "w") as f:
                    f.write("written from the sandbox")
                return "ok"
            except OSError as exc:
                return exc.errno
        out["write"] = {p: attempt(p) for p in inputs["writes"]}
        results = {}
        for port in inputs.get("ports", []):
            s = socket.socket()
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
                results[str(port)] = "connected"
            except OSError as exc:
                results[str(port)] = type(exc).__name__
            finally:
                s.close()
        out["connect"] = results
        return out
"""


class Layout:
    """Host directories for one isolation test (all under a 0755 dir in /tmp)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.skill = root / "deploy"
        self.jobs = root / "jobs"
        self.hidden = root / "hidden"
        write_skill(self.skill, PROBE)
        nobody_dir(root, "jobs")
        self.work = nobody_dir(self.jobs, "job-1")
        self.hidden.mkdir()
        (self.hidden / "secret.txt").write_text("platform data")

    def isolation(self, network: bool = False) -> Isolation:
        return Isolation(ro_binds=(str(self.skill),), rw_binds=(str(self.jobs),), network=network)


@pytest.fixture
def layout(shared_dir: Path) -> Layout:
    return Layout(shared_dir)


def _python() -> str:
    # The interpreter whose prefix gets bound; /usr/bin/python3 keeps /root out entirely.
    return NOBODY_PYTHON or sys.executable


@contextlib.asynccontextmanager
async def _started(layout: Layout, name: str, **options: Any) -> AsyncIterator[ForkServer]:
    """A bwrap-isolated zygote running as uid 65534 (or as this user when not root)."""
    uid = NOBODY if IS_ROOT else None
    skip_without_bwrap(uid)
    if NOBODY_PYTHON is None and uid is not None:
        pytest.skip("no python interpreter executable by uid 65534")
    fs = ForkServer(
        python=_python(),
        sys_path=[],
        uid=uid,
        gid=uid,
        isolation=layout.isolation(),
        name=name,
        **options,
    )
    await fs.start()
    try:
        yield fs
    finally:
        await fs.close()


def _process_tree(root: int) -> list[int]:
    """``root`` and every live process descended from it, on the host."""
    parent_of: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{name}/stat").read_bytes()
                parent_of[int(name)] = int(stat[stat.rfind(b")") + 2 :].split()[1])
    tree = [root]
    for pid in tree:
        tree += [child for child, parent in parent_of.items() if parent == pid]
    return tree


def _open_files(pid: int) -> set[str]:
    """What the descriptors of host process ``pid`` point at (``pipe:[inode]`` for a pipe)."""
    found = set()
    with contextlib.suppress(FileNotFoundError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return found


async def test_no_descriptor_of_the_service_crosses_into_a_sandbox(layout: Layout) -> None:
    """The sandbox's processes are started without a fork of the service: a descriptor the
    service holds inheritable (as a library may leave one) must still not reach them."""
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    try:
        pipe = os.readlink(f"/proc/self/fd/{write_end}")
        async with _started(layout, "no-leak") as fs:
            assert fs.pid is not None
            sandbox = _process_tree(fs.pid)
            assert len(sandbox) >= 2  # bubblewrap and the zygote, at least
            assert [pid for pid in sandbox if pipe in _open_files(pid)] == []
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest_asyncio.fixture(loop_scope="session")
async def sandboxed(layout: Layout) -> AsyncIterator[ForkServer]:
    async with _started(layout, "sandboxed") as fs:
        yield fs


async def _probe(fs: ForkServer, layout: Layout, **inputs: object) -> dict:
    inputs.setdefault("paths", [])
    inputs.setdefault("writes", [])
    child = await fs.spawn(
        call(layout.skill, json.dumps(inputs).encode()),
        workdir=str(layout.work),
        env={"HOME": str(layout.work)},
    )
    outcome = await asyncio.wait_for(child.wait(), 60)
    assert outcome.result is not None, await child.stderr.read()
    assert outcome.result["ok"], outcome.result
    return outcome.result["value"]


async def test_unbound_host_paths_are_invisible(sandboxed: ForkServer, layout: Layout) -> None:
    here = HERE
    value = await _probe(
        sandboxed,
        layout,
        paths=[
            str(layout.hidden),
            str(layout.hidden / "secret.txt"),
            "/root",
            "/etc/shadow",
            str(here),
            "/var/lib",
            "/home",
            str(layout.skill / "main.py"),
            str(layout.work),
            "/usr/bin/env",
        ],
    )
    visible = value["visible"]
    assert visible[str(layout.hidden)] is False
    assert visible[str(layout.hidden / "secret.txt")] is False
    assert visible["/etc/shadow"] is False
    assert visible[str(here)] is False
    assert visible["/var/lib"] is False and visible["/home"] is False
    if not _python().startswith("/root/"):
        assert visible["/root"] is False
    assert visible[str(layout.skill / "main.py")] is True
    assert visible[str(layout.work)] is True
    assert visible["/usr/bin/env"] is True


async def test_rw_bind_is_writable_and_ro_bind_is_not(
    sandboxed: ForkServer, layout: Layout
) -> None:
    import errno

    target_rw = layout.work / "out.txt"
    target_ro = layout.skill / "tamper.txt"
    value = await _probe(
        sandboxed, layout, writes=[str(target_rw), str(target_ro), "/usr/tamper.txt"]
    )
    assert value["write"][str(target_rw)] == "ok"
    assert target_rw.read_text() == "written from the sandbox"
    assert value["write"][str(target_ro)] == errno.EROFS
    assert value["write"]["/usr/tamper.txt"] == errno.EROFS
    assert not target_ro.exists()
    if IS_ROOT:
        assert value["uid"] == NOBODY and value["gid"] == NOBODY
        assert target_rw.stat().st_uid == NOBODY  # owned by 65534 on the host as well


async def test_no_network_means_no_host_loopback(sandboxed: ForkServer, layout: Layout) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        value = await _probe(sandboxed, layout, ports=[port])
        assert value["connect"][str(port)] == "ConnectionRefusedError"
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever reached the host listener
    finally:
        listener.close()


async def test_network_true_shares_the_host_network(layout: Layout) -> None:
    uid = NOBODY if IS_ROOT else None
    skip_without_bwrap(uid)
    if NOBODY_PYTHON is None and uid is not None:
        pytest.skip("no python interpreter executable by uid 65534")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        async with ForkServer(
            python=_python(),
            sys_path=[],
            uid=uid,
            gid=uid,
            isolation=layout.isolation(network=True),
            name="net",
        ) as fs:
            value = await _probe(fs, layout, ports=[port])
        assert value["connect"][str(port)] == "connected"
    finally:
        listener.close()


async def test_kill_works_inside_the_pid_namespace(sandboxed: ForkServer, layout: Layout) -> None:
    marker = f"{uuid.uuid4().int % 10**6}.{os.getpid()}"
    child = await sandboxed.spawn(
        Exec(["sleep", marker]), workdir=str(layout.work), env={"PATH": "/usr/bin:/bin"}
    )
    assert await eventually(lambda: len(processes_with_arg(marker)) == 1)
    host_pid = processes_with_arg(marker)[0]
    assert child.pid != host_pid  # the child has its own pid namespace
    await child.kill()
    outcome = await asyncio.wait_for(child.wait(), 30)
    assert outcome.signal == signal.SIGKILL
    assert await eventually(lambda: processes_with_arg(marker) == [])


async def test_a_process_that_leaves_its_job_dies_with_it_inside_the_sandbox(
    sandboxed: ForkServer, layout: Layout
) -> None:
    marker = f"escaper-{uuid.uuid4().hex}"
    write_skill(
        layout.skill,
        """
        import os
        def run(inputs):
            middle = os.fork()
            if middle == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execvp("sleep", [inputs["marker"], "1000"])
                os._exit(0)
            os.waitpid(middle, 0)
            return "left"
    """,
        module="escaper",
    )
    child = await sandboxed.spawn(
        call(layout.skill, json.dumps({"marker": marker}).encode(), module="escaper"),
        workdir=str(layout.work),
        env={"PATH": "/usr/bin:/bin"},
    )
    assert (await asyncio.wait_for(child.wait(), 30)).result == {"ok": True, "value": "left"}
    assert await eventually(lambda: processes_with_arg(marker) == []), processes_with_arg(marker)


async def test_sandboxed_concurrent_jobs(sandboxed: ForkServer, layout: Layout) -> None:
    async def one(i: int) -> dict:
        return await _probe(sandboxed, layout, paths=[str(layout.hidden)], n=i)

    values = await asyncio.gather(*(one(i) for i in range(20)))
    assert all(v["visible"][str(layout.hidden)] is False for v in values)
    assert len({v["pid"] for v in values}) == 20


async def test_sandboxed_zygote_death_takes_its_children(layout: Layout) -> None:
    marker = f"{uuid.uuid4().int % 10**6}.{os.getpid()}"
    async with _started(layout, "sandbox-doomed") as fs:
        child = await fs.spawn(
            Exec(["sleep", marker]), workdir=str(layout.work), env={"PATH": "/usr/bin:/bin"}
        )
        assert await eventually(lambda: len(processes_with_arg(marker)) == 1)
        os.kill(fs.pid, signal.SIGKILL)  # bwrap itself
        with pytest.raises(ForkServerDied):
            await asyncio.wait_for(child.wait(), 30)
        assert await eventually(lambda: processes_with_arg(marker) == [])


HELD = Limits(cpu_seconds=30, open_files=200, file_size_bytes=1 << 30, processes=4096)
"""The limits of the one job a sandbox below serves: its zygote holds them itself."""

PATH = {"PATH": "/usr/bin:/bin"}


@pytest_asyncio.fixture(loop_scope="session")
async def one_job(layout: Layout) -> AsyncIterator[ForkServer]:
    """A sandbox of one job's own, as an agent job has, whose zygote holds the job's limits."""
    async with _started(layout, "one-job", prefork=False, limits=HELD) as fs:
        yield fs


async def _shell(fs: ForkServer, layout: Layout, script: str) -> tuple[int | None, str, str]:
    child = await fs.spawn(
        Exec(["/bin/bash", "-c", script]), workdir=str(layout.work), env=PATH, limits=HELD
    )
    out, err = await asyncio.gather(child.stdout.read(), child.stderr.read())
    outcome = await asyncio.wait_for(child.wait(), 30)
    return outcome.exit_code, out.decode(), err.decode()


async def test_a_one_job_sandbox_starts_each_command_clean_under_the_limits_its_zygote_holds(
    one_job: ForkServer, layout: Layout
) -> None:
    code, out, err = await _shell(
        one_job,
        layout,
        """
        echo "limits $(ulimit -Sn) $(ulimit -Hn) $(ulimit -St) $(ulimit -Ht) $(ulimit -Hf)"
        ulimit -n 300 2>/dev/null; echo "raise $?"
        echo "parent $(grep '^Max open files' /proc/$PPID/limits | tr -s ' ' | cut -d' ' -f4,5)"
        echo "ids $$ $(cut -d' ' -f5,6 /proc/$$/stat)"
        grep -E '^Sig(Blk|Ign)' /proc/self/status
        echo "cwd $(pwd)"
        exec ls -l /proc/self/fd | awk 'NR > 1 { print "fd", $(NF - 2), $NF }'
        """,
    )
    assert code == 0, err
    lines = dict(line.replace("\t", " ").split(" ", 1) for line in out.splitlines())
    assert lines["limits"] == f"200 200 30 31 {(1 << 30) // 1024}"
    assert lines["raise"] != "0"  # a hard limit cannot be raised from inside
    assert lines["parent"] == "200 200"  # the zygote holds the job's limits itself
    pid, group, session = lines["ids"].split()
    assert pid == group == session  # a session and process group of its own
    assert int(lines["SigBlk:"], 16) == 0
    # Nothing ignored but the two signals glibc keeps for itself (32 and 33), which a program
    # started with posix_spawn begins with ignored; its C library takes them back.
    assert int(lines["SigIgn:"], 16) & ~(0b11 << 31) == 0
    assert lines["cwd"].strip() == str(layout.work)
    fds = dict(line.split()[1:] for line in out.splitlines() if line.startswith("fd "))
    assert fds.pop("0") == "/dev/null"
    assert {"1", "2"} <= fds.keys()
    # Only its pipes and what ls opened itself (its listing); nothing of the zygote's.
    assert all(target.startswith("/proc/") for fd, target in fds.items() if fd not in {"1", "2"})


async def test_a_command_a_one_job_sandbox_cannot_start_is_reported_on_its_stderr(
    one_job: ForkServer, layout: Layout
) -> None:
    child = await one_job.spawn(
        Exec(["/no/such/program"]), workdir=str(layout.work), env=PATH, limits=HELD
    )
    outcome = await asyncio.wait_for(child.wait(), 30)
    assert outcome.exit_code == 127
    assert b"cannot exec '/no/such/program'" in await child.stderr.read()
    child = await one_job.spawn(
        Exec(["/bin/true"]), workdir=str(layout.work / "gone"), env=PATH, limits=HELD
    )
    outcome = await asyncio.wait_for(child.wait(), 30)
    assert outcome.exit_code == 126
    assert b"chdir" in await child.stderr.read()


async def test_a_one_job_sandbox_kills_a_commands_whole_group(
    one_job: ForkServer, layout: Layout
) -> None:
    marker = f"{uuid.uuid4().int % 10**6}.{os.getpid()}"
    child = await one_job.spawn(
        Exec(["/bin/bash", "-c", f"sleep {marker} & wait"]),
        workdir=str(layout.work),
        env=PATH,
        limits=HELD,
    )
    assert await eventually(lambda: len(processes_with_arg(marker)) == 1)
    await child.kill()
    outcome = await asyncio.wait_for(child.wait(), 30)
    assert outcome.signal == signal.SIGKILL
    assert await eventually(lambda: processes_with_arg(marker) == [])


async def test_a_command_of_a_one_job_sandbox_dies_with_its_zygote(
    one_job: ForkServer, layout: Layout
) -> None:
    marker = f"{uuid.uuid4().int % 10**6}.{os.getpid()}"
    child = await one_job.spawn(
        Exec(["/bin/sleep", marker]), workdir=str(layout.work), env=PATH, limits=HELD
    )
    assert await eventually(lambda: len(processes_with_arg(marker)) == 1)
    with open(f"/proc/{processes_with_arg(marker)[0]}/status") as f:
        zygote = int(next(line for line in f if line.startswith("PPid:")).split()[1])
    os.kill(zygote, signal.SIGKILL)  # the zygote, not bwrap: no parent-death signal was set
    with pytest.raises(ForkServerDied):
        await asyncio.wait_for(child.wait(), 30)
    assert await eventually(lambda: processes_with_arg(marker) == [])


async def test_missing_bind_is_reported(shared_dir: Path) -> None:
    skip_without_bwrap()
    fs = ForkServer(
        python=sys.executable,
        sys_path=[],
        name="badbind",
        isolation=Isolation(ro_binds=(str(shared_dir / "nope"),)),
    )
    with pytest.raises(SandboxError, match="nope"):
        await fs.start()


async def test_bind_plan_orders_parents_first_and_skips_covered_paths() -> None:
    plan = _plan_binds(
        [
            ("rw", "/srv/data/jobs"),
            ("ro", "/srv/data"),
            ("ro", "/usr"),
            ("ro-try", "/usr/lib/python3"),
            ("ro", "/srv/data/jobs/shared"),
            ("rw", "/srv/data/jobs/a"),
            ("ro-try", "/opt/x"),
            ("ro", "/opt/x"),
        ]
    )
    assert plan == [
        ("ro", "/usr"),
        ("ro", "/opt/x"),
        ("ro", "/srv/data"),
        ("rw", "/srv/data/jobs"),
        ("ro", "/srv/data/jobs/shared"),
    ]


async def test_an_egress_socket_needs_a_namespace_of_the_sandboxs_own() -> None:
    from puras_sandbox.bwrap import EGRESS_SCRIPT, bwrap_command

    with pytest.raises(ValueError, match="network=False"):
        Isolation(network=True, egress_socket="/run/egress/egress.sock")
    with pytest.raises(ValueError, match="absolute"):
        Isolation(egress_socket="egress.sock")
    for port in (0, 65536):
        with pytest.raises(ValueError, match="TCP port"):
            Isolation(egress_socket="/run/egress/egress.sock", egress_port=port)
    argv = bwrap_command(
        bwrap="/usr/bin/bwrap",
        isolation=Isolation(egress_socket="/tmp/egress-x/egress.sock", egress_port=65535),
        python="/usr/bin/python3",
        python_paths=(),
        sys_path=(),
        zygote_files=(),
        uid=None,
        gid=None,
    )
    assert "--share-net" not in argv
    assert ["--ro-bind", "/tmp/egress-x", "/tmp/egress-x"] == argv[
        argv.index("/tmp/egress-x") - 1 : argv.index("/tmp/egress-x") + 2
    ]
    # After bwrap's own options: the hand-over first, then (appended by the caller) the zygote.
    tail = argv[argv.index("--") + 1 :]
    assert tail == [
        "/usr/bin/python3",
        "-I",
        "-S",
        EGRESS_SCRIPT,
        "/tmp/egress-x/egress.sock",
        "65535",
    ]


async def test_a_sandbox_has_accounts_of_its_own() -> None:
    """Its ``/etc/passwd`` and ``/etc/group`` name root, nobody and the sandbox's own ids, and
    none of the host's accounts; a program that looks its user up finds it (bash does at every
    start, and would otherwise load another name service to miss it there too)."""
    uid = 2_000_000 + 4242 if IS_ROOT else None
    skip_without_bwrap(uid)
    if uid is not None and NOBODY_PYTHON is None:
        pytest.skip("no python interpreter executable by any uid")
    fs = ForkServer(
        python=_python(), sys_path=[], uid=uid, gid=uid, isolation=Isolation(), name="accounts"
    )
    await fs.start()
    try:
        child = await fs.spawn(
            Exec(["/bin/bash", "-c", "id -un; id -gn; echo ~; cut -d: -f1 /etc/passwd /etc/group"]),
            workdir="/tmp",
            env=PATH,
        )
        out, err = await asyncio.gather(child.stdout.read(), child.stderr.read())
        assert (await asyncio.wait_for(child.wait(), 30)).exit_code == 0, err
    finally:
        await fs.close()
    user, group, home, *names = out.decode().splitlines()
    assert (user, group, home) == ("puras", "puras", "/tmp")
    assert set(names) == {"root", "nobody", "nogroup", "puras"}
    host_accounts = {line.split(":")[0] for line in Path("/etc/passwd").read_text().splitlines()}
    assert host_accounts - {"root", "nobody"}, "the host has accounts of its own to hide"


async def test_the_accounts_are_made_from_descriptors_not_bound_from_the_host() -> None:
    from puras_sandbox.bwrap import accounts, bwrap_command

    argv = bwrap_command(
        bwrap="/usr/bin/bwrap",
        isolation=Isolation(),
        python="/usr/bin/python3",
        python_paths=(),
        sys_path=(),
        zygote_files=(),
        uid=2_000_001,
        gid=2_000_001,
        data=[(7, "/etc/passwd"), (8, "/etc/group")],
    )
    assert "/etc/passwd" not in [argv[i + 1] for i, a in enumerate(argv) if a == "--ro-bind-try"]
    at = argv.index("--ro-bind-data")
    assert argv[at : at + 6] == [
        "--ro-bind-data",
        "7",
        "/etc/passwd",
        "--ro-bind-data",
        "8",
        "/etc/group",
    ]
    made = accounts(65534, 65534)  # a sandbox of nobody's: no account more
    assert made["/etc/passwd"].decode().splitlines() == [
        "root:x:0:0:root:/root:/usr/sbin/nologin",
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/bash",
    ]
