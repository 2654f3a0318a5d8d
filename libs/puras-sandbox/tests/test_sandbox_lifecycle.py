"""Killing jobs, zygote death, start/close behaviour."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from puras_sandbox import Exec, ForkServer, ForkServerDied, SandboxError
from sandbox_testlib import call, eventually, group_members, processes_with_arg, write_skill

pytestmark = pytest.mark.asyncio(loop_scope="session")

ENV = {"PATH": "/usr/bin:/bin"}

FAMILY = """
    import os, subprocess, sys, time
    def run(inputs):
        if inputs.get("ignore_term"):
            import signal
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        kids = [subprocess.Popen(["sleep", "1000"]) for _ in range(2)]
        pid = os.fork()
        if pid == 0:
            subprocess.Popen(["sleep", "1000"])   # a great-grandchild
            time.sleep(1000)
            os._exit(0)
        print("ready", flush=True)
        time.sleep(1000)
"""


async def _family(server: ForkServer, tmp_path: Path, **inputs: object):
    import json

    write_skill(tmp_path, FAMILY)
    child = await server.spawn(
        call(tmp_path, json.dumps(inputs).encode()), workdir=str(tmp_path), env=ENV
    )
    assert await asyncio.wait_for(child.stdout.readline(), 30) == b"ready\n"
    # the job's own process plus 2 sleeps, a forked copy and its sleep
    assert await eventually(lambda: len(group_members(child.pid)) >= 5)
    return child


async def test_kill_leaves_no_process_behind(server: ForkServer, tmp_path: Path) -> None:
    child = await _family(server, tmp_path)
    await child.kill()
    outcome = await asyncio.wait_for(child.wait(), 30)
    assert outcome.exit_code is None and outcome.signal == signal.SIGKILL
    assert outcome.result is None
    assert await eventually(lambda: group_members(child.pid) == []), group_members(child.pid)


async def test_terminate_sends_sigterm_first(server: ForkServer, tmp_path: Path) -> None:
    child = await _family(server, tmp_path)
    await child.terminate(grace=10)
    outcome = await child.wait()
    assert outcome.signal == signal.SIGTERM
    assert await eventually(lambda: group_members(child.pid) == []), group_members(child.pid)


async def test_terminate_escalates_to_sigkill(server: ForkServer, tmp_path: Path) -> None:
    child = await _family(server, tmp_path, ignore_term=True)
    await child.terminate(grace=0.5)
    outcome = await child.wait()
    assert outcome.signal == signal.SIGKILL
    assert await eventually(lambda: group_members(child.pid) == []), group_members(child.pid)


async def test_leftovers_in_the_group_are_killed_when_the_job_ends(
    server: ForkServer, tmp_path: Path
) -> None:
    write_skill(
        tmp_path,
        """
        import subprocess
        def run(inputs):
            # a background process that keeps the job's stdout open
            subprocess.Popen(["sleep", "1000"])
            return "done"
    """,
    )
    child = await server.spawn(call(tmp_path), workdir=str(tmp_path), env=ENV)
    outcome = await asyncio.wait_for(child.wait(), 30)
    assert outcome.result == {"ok": True, "value": "done"}
    assert await eventually(lambda: group_members(child.pid) == [])


ESCAPER = """
    import os, time
    def run(inputs):
        # Leave the job the way daemons do: a double fork into a new session (reaping the
        # middle process), which killing the job's process group misses.
        middle = os.fork()
        if middle == 0:
            os.setsid()
            if os.fork() == 0:
                os.execvp("sleep", [inputs["marker"], "1000"])  # the marker as argv[0]
            os._exit(0)
        os.waitpid(middle, 0)
        if inputs.get("hang"):
            print("ready", flush=True)
            time.sleep(1000)
        return "left"
"""


@pytest.mark.parametrize("how", ["returns", "is_killed"])
async def test_processes_that_leave_the_jobs_session_are_killed_too(
    server: ForkServer, tmp_path: Path, how: str
) -> None:
    marker = f"escaper-{uuid.uuid4().hex}"
    write_skill(tmp_path, ESCAPER)
    payload = json.dumps({"marker": marker, "hang": how == "is_killed"}).encode()
    child = await server.spawn(call(tmp_path, payload), workdir=str(tmp_path), env=ENV)
    if how == "is_killed":
        assert await asyncio.wait_for(child.stdout.readline(), 30) == b"ready\n"
        assert await eventually(lambda: processes_with_arg(marker) != [])  # it did escape
        await child.kill()
    await asyncio.wait_for(child.wait(), 30)
    assert await eventually(lambda: processes_with_arg(marker) == []), processes_with_arg(marker)


async def test_kill_after_exit_is_harmless(server: ForkServer, tmp_path: Path) -> None:
    child = await server.spawn(Exec(["true"]), workdir=str(tmp_path), env=ENV)
    assert (await child.wait()).exit_code == 0
    await child.kill()
    await child.terminate(grace=0.1)
    assert (await child.wait()).exit_code == 0


async def test_zygote_death_fails_waits_and_kills_children(tmp_path: Path) -> None:
    marker = f"{uuid.uuid4().int % 10**6}.{os.getpid()}"
    fs = ForkServer(python=sys.executable, sys_path=[], name="doomed")
    await fs.start()
    try:
        children = [
            await fs.spawn(Exec(["sleep", marker]), workdir=str(tmp_path), env=ENV)
            for _ in range(3)
        ]
        assert await eventually(lambda: len(processes_with_arg(marker)) == 3)
        os.kill(fs.pid, signal.SIGKILL)
        for child in children:
            with pytest.raises(ForkServerDied) as info:
                await asyncio.wait_for(child.wait(), 30)
            assert info.value.signal == signal.SIGKILL
            assert "doomed" in str(info.value) and str(fs.pid) in str(info.value)
        assert not fs.alive
        assert await eventually(lambda: processes_with_arg(marker) == [])
        with pytest.raises(ForkServerDied):
            await fs.spawn(Exec(["true"]), workdir=str(tmp_path), env=ENV)
    finally:
        await fs.close()


async def test_close_kills_live_children(tmp_path: Path) -> None:
    marker = f"{uuid.uuid4().int % 10**6}.{os.getpid()}"
    async with ForkServer(python=sys.executable, sys_path=[], name="closing") as fs:
        child = await fs.spawn(Exec(["sleep", marker]), workdir=str(tmp_path), env=ENV)
        assert await eventually(lambda: len(processes_with_arg(marker)) == 1)
        zygote = fs.pid
    outcome = await asyncio.wait_for(child.wait(), 30)
    assert outcome.signal == signal.SIGKILL
    assert processes_with_arg(marker) == []
    assert not fs.alive
    assert _is_zombie(zygote)  # gone (or at most an unreaped zombie)
    with pytest.raises(SandboxError):
        await fs.spawn(Exec(["true"]), workdir=str(tmp_path), env=ENV)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return True
    return data[data.rfind(b")") + 2 :].split()[0] in (b"Z", b"X")


async def test_spawn_before_start_and_double_start(tmp_path: Path) -> None:
    fs = ForkServer(python=sys.executable, sys_path=[], name="lazy")
    assert not fs.alive and fs.pid is None
    with pytest.raises(SandboxError, match="not started"):
        await fs.spawn(Exec(["true"]), workdir=str(tmp_path), env=ENV)
    await fs.start()
    try:
        assert fs.alive and fs.pid is not None
        with pytest.raises(SandboxError, match="twice"):
            await fs.start()
    finally:
        await fs.close()
    await fs.close()  # idempotent


async def test_failed_preload_is_reported() -> None:
    fs = ForkServer(
        python=sys.executable, sys_path=[], preload=("no_such_module_xyz",), name="badpreload"
    )
    with pytest.raises(SandboxError, match="no_such_module_xyz"):
        await fs.start()
    assert not fs.alive


async def test_preloaded_modules_are_already_imported(tmp_path: Path) -> None:
    write_skill(
        tmp_path,
        """
        import sys
        def run(inputs):
            return {"decimal": "decimal" in sys.modules, "fractions": "fractions" in sys.modules}
    """,
    )
    async with ForkServer(
        python=sys.executable, sys_path=[], preload=("decimal",), name="preload"
    ) as fs:
        outcome = await (await fs.spawn(call(tmp_path), workdir=str(tmp_path), env={})).wait()
    assert outcome.result["value"] == {"decimal": True, "fractions": False}


async def test_missing_interpreter_is_reported() -> None:
    fs = ForkServer(python="/nonexistent/python3", sys_path=[], name="nopython")
    with pytest.raises(SandboxError, match="/nonexistent/python3"):
        await fs.start()


async def test_without_spare_children_jobs_still_run(tmp_path: Path) -> None:
    write_skill(tmp_path, "def run(inputs):\n    return inputs\n")
    async with ForkServer(python=sys.executable, sys_path=[], name="nospare", prefork=False) as fs:
        children = await asyncio.gather(
            *[
                fs.spawn(call(tmp_path, b'{"i": %d}' % i), workdir=str(tmp_path), env={})
                for i in range(5)
            ]
        )
        results = [await c.wait() for c in children]
    assert [r.result["value"]["i"] for r in results] == list(range(5))


async def test_cancelled_spawns_leave_no_child_and_no_broken_channel(
    server: ForkServer, tmp_path: Path
) -> None:
    marker = f"{uuid.uuid4().int % 10**6}.{os.getpid()}"
    for delay_steps in range(6):
        tasks = [
            asyncio.ensure_future(
                server.spawn(Exec(["sleep", marker]), workdir=str(tmp_path), env=ENV)
            )
            for _ in range(10)
        ]
        for _ in range(delay_steps):
            await asyncio.sleep(0)
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                child = await t
            except asyncio.CancelledError:
                continue
            await child.kill()  # spawned before the cancel landed: ours to clean up
    assert await eventually(lambda: processes_with_arg(marker) == [])
    outcome = await (
        await server.spawn(Exec(["echo", "still fine"]), workdir=str(tmp_path), env=ENV)
    ).wait()
    assert outcome.exit_code == 0


async def test_a_kill_before_the_child_has_its_own_group_still_lands() -> None:
    """A child signalled between its fork and its ``setsid`` is not yet a process group:
    the kill reaches the process itself instead of failing on the missing group."""
    from puras_sandbox import _zygote

    ours, theirs = socket.socketpair()
    not_a_leader = subprocess.Popen(["sleep", "1000"])  # in this process's group
    try:
        zygote = _zygote.Zygote(ours)
        zygote.children.add(not_a_leader.pid)
        zygote.on_kill({"pid": not_a_leader.pid, "sig": int(signal.SIGKILL)})
        assert await asyncio.to_thread(not_a_leader.wait, 10) == -signal.SIGKILL
    finally:
        not_a_leader.kill()
        not_a_leader.wait()
        ours.close()
        theirs.close()


async def test_a_signal_before_the_child_is_detached_waits_for_its_fresh_dispositions() -> None:
    """Until ``setsid`` and the reset of its handlers, a child still runs the zygote's
    SIGTERM handler (which only sets a flag): a SIGTERM in that window is held and then ends
    the child, as it would a fresh Python."""
    script = """
import os, signal
from puras_sandbox import _zygote
_zygote._ZYGOTE_PID = os.getpid()
signal.signal(signal.SIGTERM, lambda *_: None)   # the zygote's own handler
pid = _zygote._fork()
if pid == 0:
    os.kill(os.getpid(), signal.SIGTERM)          # before the child is detached
    _zygote._detach()
    os._exit(0)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert int(done.stdout) == -signal.SIGTERM


async def test_a_warm_child_holds_only_the_zygotes_modules(tmp_path: Path) -> None:
    """The spare child's warm-up imports nothing of its own: every module a job finds loaded
    was loaded once, in the zygote, so no job pays for importing one it never asked for."""
    loaded: dict[bool, set[str]] = {}
    for prefork in (True, False):
        skill = tmp_path / str(prefork)
        skill.mkdir()
        write_skill(skill, "import sys\ndef run(inputs):\n    return sorted(sys.modules)\n")
        async with ForkServer(python=sys.executable, sys_path=[], prefork=prefork) as fs:
            child = await fs.spawn(call(skill, b"{}"), workdir=str(skill), env={})
            loaded[prefork] = set((await child.wait()).result["value"])
    assert loaded[True] - loaded[False] == set()
