"""Resource limits and the unprivileged uid."""

from __future__ import annotations

import errno
import json
import signal
from pathlib import Path

import pytest
from puras_sandbox import ForkServer, Limits
from sandbox_testlib import NOBODY, call, nobody_dir, write_skill

pytestmark = pytest.mark.asyncio(loop_scope="session")

MiB = 1024 * 1024


async def test_address_space_limit_makes_big_allocation_fail(
    server: ForkServer, tmp_path: Path
) -> None:
    write_skill(
        tmp_path,
        """
        def run(inputs):
            data = bytearray(inputs["size"])
            return len(data)
    """,
    )
    big = json.dumps({"size": 2048 * MiB}).encode()
    limited = await server.spawn(
        call(tmp_path, big),
        workdir=str(tmp_path),
        env={},
        limits=Limits(address_space_bytes=512 * MiB),
    )
    outcome = await limited.wait()
    assert outcome.result["ok"] is False
    assert outcome.result["error"]["type"] == "MemoryError"
    small = json.dumps({"size": 16 * MiB}).encode()
    fine = await server.spawn(
        call(tmp_path, small),
        workdir=str(tmp_path),
        env={},
        limits=Limits(address_space_bytes=512 * MiB),
    )
    assert (await fine.wait()).result == {"ok": True, "value": 16 * MiB}


async def test_file_size_limit(server: ForkServer, tmp_path: Path) -> None:
    write_skill(
        tmp_path,
        """
        def run(inputs):
            try:
                with open("big.bin", "wb") as f:
                    f.write(b"x" * 10000)
            except OSError as exc:
                return {"errno": exc.errno}
            return {"errno": None}
    """,
    )
    child = await server.spawn(
        call(tmp_path), workdir=str(tmp_path), env={}, limits=Limits(file_size_bytes=4096)
    )
    outcome = await child.wait()
    assert outcome.result["value"] == {"errno": errno.EFBIG}
    assert (tmp_path / "big.bin").stat().st_size <= 4096


async def test_file_size_limit_kills_an_exec_with_sigxfsz(
    server: ForkServer, tmp_path: Path
) -> None:
    from puras_sandbox import Exec

    child = await server.spawn(
        Exec(["sh", "-c", "head -c 100000 /dev/zero > out.bin"]),
        workdir=str(tmp_path),
        env={"PATH": "/usr/bin:/bin"},
        limits=Limits(file_size_bytes=4096),
    )
    outcome = await child.wait()
    # the shell reports its child's death by SIGXFSZ as 128 + signal
    assert outcome.exit_code == 128 + signal.SIGXFSZ or outcome.signal == signal.SIGXFSZ


async def test_open_files_limit(server: ForkServer, tmp_path: Path) -> None:
    write_skill(
        tmp_path,
        """
        def run(inputs):
            files = []
            try:
                for _ in range(100):
                    files.append(open("/dev/null"))
            except OSError as exc:
                return {"errno": exc.errno, "opened": len(files)}
            return {"errno": None, "opened": len(files)}
    """,
    )
    child = await server.spawn(
        call(tmp_path), workdir=str(tmp_path), env={}, limits=Limits(open_files=20)
    )
    value = (await child.wait()).result["value"]
    assert value["errno"] == errno.EMFILE
    assert value["opened"] < 20


async def test_cpu_limit_stops_a_busy_loop(server: ForkServer, tmp_path: Path) -> None:
    write_skill(
        tmp_path,
        """
        def run(inputs):
            while True:
                pass
    """,
    )
    child = await server.spawn(
        call(tmp_path), workdir=str(tmp_path), env={}, limits=Limits(cpu_seconds=1)
    )
    outcome = await child.wait()
    assert outcome.exit_code is None
    assert outcome.signal in (signal.SIGXCPU, signal.SIGKILL)
    assert outcome.result is None


async def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="cpu_seconds"):
        Limits(cpu_seconds=-1)
    with pytest.raises(ValueError, match="open_files"):
        Limits(open_files=1.5)  # type: ignore[arg-type]
    assert Limits(open_files=3).to_wire() == {"open_files": 3}


async def test_child_runs_unprivileged(nobody_server: ForkServer, shared_dir: Path) -> None:
    secret = shared_dir / "root-only.txt"
    secret.write_text("top secret")
    secret.chmod(0o600)
    skill = shared_dir / "skill"
    write_skill(
        skill,
        """
        import os
        def run(inputs):
            try:
                open(inputs["secret"]).read()
                readable = True
            except PermissionError:
                readable = False
            return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
                    "groups": os.getgroups(), "readable": readable}
    """,
    )
    work = nobody_dir(shared_dir, "job")
    child = await nobody_server.spawn(
        call(skill, json.dumps({"secret": str(secret)}).encode()), workdir=str(work), env={}
    )
    outcome = await child.wait()
    assert outcome.result["value"] == {
        "uid": NOBODY,
        "euid": NOBODY,
        "gid": NOBODY,
        "groups": [],
        "readable": False,
    }


async def test_children_cannot_gain_privileges(nobody_server: ForkServer, shared_dir: Path) -> None:
    from puras_sandbox import Exec

    work = nobody_dir(shared_dir, "job")
    # no_new_privs: a setuid binary (su, sudo, mount...) cannot raise the child's privileges
    child = await nobody_server.spawn(
        Exec(["grep", "NoNewPrivs", "/proc/self/status"]),
        workdir=str(work),
        env={"PATH": "/usr/bin:/bin"},
    )
    assert (await child.wait()).exit_code == 0
    assert (await child.stdout.read()).split() == [b"NoNewPrivs:", b"1"]


async def test_process_limit_applies_to_unprivileged_child(
    nobody_server: ForkServer, shared_dir: Path
) -> None:
    skill = shared_dir / "skill"
    write_skill(
        skill,
        """
        import os
        def run(inputs):
            try:
                pid = os.fork()
            except OSError as exc:
                return {"errno": exc.errno}
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            return {"errno": None}
    """,
    )
    work = nobody_dir(shared_dir, "job")
    # RLIMIT_NPROC counts every process of uid 65534, the zygote included, so 1 blocks forks.
    child = await nobody_server.spawn(
        call(skill), workdir=str(work), env={}, limits=Limits(processes=1)
    )
    assert (await child.wait()).result["value"] == {"errno": errno.EAGAIN}


async def test_a_job_cannot_read_another_jobs_environment(
    nobody_server: ForkServer, shared_dir: Path
) -> None:
    """Two jobs of the same uid: neither is dumpable, so neither reads the other's
    ``/proc/<pid>/environ`` (where its job token is) nor its memory."""
    write_skill(
        shared_dir,
        """
        import ctypes, os, time

        def run(inputs):
            if inputs.get("wait"):
                time.sleep(inputs["wait"])
                return None
            libc = ctypes.CDLL(None, use_errno=True)
            found = {"dumpable": libc.prctl(3, 0, 0, 0, 0)}  # PR_GET_DUMPABLE
            for name in ("environ", "mem", "cmdline"):
                try:
                    with open(f"/proc/{inputs['pid']}/{name}", "rb") as f:
                        found[name] = f.read(4096).decode("latin-1")
                except OSError as exc:
                    found[name] = exc.errno
            found["own"] = os.environ["PURAS_JOB_TOKEN"]
            return found
    """,
    )
    work = nobody_dir(shared_dir, "work")
    victim = await nobody_server.spawn(
        call(shared_dir, json.dumps({"wait": 30}).encode()),
        workdir=str(work),
        env={"PURAS_JOB_TOKEN": "the-victims-token"},
    )
    try:
        snoop = await nobody_server.spawn(
            call(shared_dir, json.dumps({"pid": victim.pid}).encode()),
            workdir=str(work),
            env={"PURAS_JOB_TOKEN": "the-snoops-token"},
        )
        outcome = await snoop.wait()
    finally:
        await victim.kill()
        await victim.wait()
    assert outcome.result is not None and outcome.result["ok"], outcome
    found = outcome.result["value"]
    assert found["dumpable"] == 0
    assert found["environ"] == errno.EACCES and found["mem"] == errno.EACCES
    assert "the-victims-token" not in json.dumps(found)
    assert found["own"] == "the-snoops-token"


async def test_each_child_reports_the_cpu_time_it_and_its_descendants_used(
    server: ForkServer, tmp_path: Path
) -> None:
    """What compute metering bills: a child that spins for 0.3 s of CPU, half of it in a
    process it waited for, reports about 0.3 s; a child that sleeps as long reports almost none."""
    write_skill(
        tmp_path,
        """
        import os, subprocess, sys, time

        def spin(seconds):
            end = time.process_time() + seconds
            while time.process_time() < end:
                pass

        def run(inputs):
            if inputs["spin"]:
                subprocess.run([sys.executable, "-c",
                    "import time\\nend = time.process_time() + 0.15\\n"
                    "while time.process_time() < end: pass"], check=True)
                spin(0.15)
            else:
                time.sleep(0.3)
            return "done"
    """,
    )
    outcomes = {}
    for spin in (True, False):
        child = await server.spawn(
            call(tmp_path, json.dumps({"spin": spin}).encode()), workdir=str(tmp_path), env={}
        )
        outcomes[spin] = await child.wait()
        assert outcomes[spin].result == {"ok": True, "value": "done"}
    assert 300 <= outcomes[True].cpu_ms < 2_000
    assert outcomes[False].cpu_ms < 150
