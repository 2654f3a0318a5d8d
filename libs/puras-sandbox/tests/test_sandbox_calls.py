"""What a job sees and returns: results, errors, output streams, env, workdir, sys.path."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from puras_sandbox import Exec, ForkServer, PythonCall, SandboxError
from sandbox_testlib import call, write_skill

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_result_value_round_trips(server: ForkServer, tmp_path: Path) -> None:
    write_skill(
        tmp_path,
        """
        def run(inputs):
            return {"got": inputs, "list": [1, 2.5, None, True], "text": "héllo ✓"}
    """,
    )
    payload = {"n": 3, "nested": {"a": [1, "two"]}, "uni": "日本"}
    child = await server.spawn(
        call(tmp_path, json.dumps(payload).encode()), workdir=str(tmp_path), env={}
    )
    outcome = await child.wait()
    assert outcome.exit_code == 0 and outcome.signal is None
    assert outcome.result == {
        "ok": True,
        "value": {"got": payload, "list": [1, 2.5, None, True], "text": "héllo ✓"},
    }
    assert outcome.ok


async def test_dotted_module_and_other_function(server: ForkServer, tmp_path: Path) -> None:
    write_skill(
        tmp_path,
        """
        def render(inputs):
            return inputs["x"] * 2
    """,
        module="tools.render",
    )
    child = await server.spawn(
        call(tmp_path, b'{"x": 21}', module="tools.render", function="render"),
        workdir=str(tmp_path),
        env={},
    )
    assert (await child.wait()).result == {"ok": True, "value": 42}


async def test_async_run_is_awaited(server: ForkServer, tmp_path: Path) -> None:
    write_skill(
        tmp_path,
        """
        import asyncio
        async def run(inputs):
            await asyncio.sleep(0)
            return {"async": True}
    """,
    )
    child = await server.spawn(call(tmp_path), workdir=str(tmp_path), env={})
    assert (await child.wait()).result == {"ok": True, "value": {"async": True}}


async def test_exception_reports_type_message_and_traceback_tail(
    server: ForkServer, tmp_path: Path
) -> None:
    write_skill(
        tmp_path,
        """
        def helper(n):
            if n == 0:
                raise ValueError(f"bad input: {n}")
            return helper(n - 1)

        def run(inputs):
            return helper(30)
    """,
    )
    child = await server.spawn(call(tmp_path), workdir=str(tmp_path), env={})
    outcome = await child.wait()
    assert outcome.exit_code == 1
    assert not outcome.ok
    err = outcome.result["error"]
    assert err["type"] == "ValueError"
    assert err["message"] == "bad input: 0"
    lines = err["traceback"].splitlines()
    assert len(lines) <= 20
    assert lines[-1] == "ValueError: bad input: 0"
    assert 'raise ValueError(f"bad input: {n}")' in err["traceback"]
    assert "_zygote" not in err["traceback"]
    # the traceback is also printed on the job's stderr, like an uncaught error would be
    assert b"ValueError: bad input: 0" in await child.stderr.read()


async def test_non_json_result_is_reported_with_the_type(
    server: ForkServer, tmp_path: Path
) -> None:
    write_skill(
        tmp_path,
        """
        def run(inputs):
            return {"items": {1, 2, 3}}
    """,
    )
    child = await server.spawn(call(tmp_path), workdir=str(tmp_path), env={})
    outcome = await child.wait()
    assert outcome.exit_code == 1
    err = outcome.result["error"]
    assert err["type"] == "ResultNotJSON"
    assert "set" in err["message"] and "run()" in err["message"]


async def test_nan_result_is_not_json(server: ForkServer, tmp_path: Path) -> None:
    write_skill(
        tmp_path,
        """
        def run(inputs):
            return {"x": float("nan")}
    """,
    )
    child = await server.spawn(call(tmp_path), workdir=str(tmp_path), env={})
    err = (await child.wait()).result["error"]
    assert err["type"] == "ResultNotJSON"
    assert "float" in err["message"] or "JSON compliant" in err["message"]


async def test_missing_module_function_and_bad_payload(server: ForkServer, tmp_path: Path) -> None:
    write_skill(tmp_path, "def run(inputs):\n    return 1\n")
    cases = [
        (call(tmp_path, module="nope"), "ModuleNotFoundError", "nope"),
        (call(tmp_path, function="missing"), "AttributeError", "missing"),
        (call(tmp_path, payload=b"{not json"), "JSONDecodeError", "Expecting"),
    ]
    for c, type_name, fragment in cases:
        outcome = await (await server.spawn(c, workdir=str(tmp_path), env={})).wait()
        assert outcome.exit_code == 1
        assert outcome.result["error"]["type"] == type_name
        assert fragment in outcome.result["error"]["message"]


async def test_sys_exit_is_reported(server: ForkServer, tmp_path: Path) -> None:
    write_skill(tmp_path, "import sys\ndef run(inputs):\n    sys.exit(7)\n")
    outcome = await (await server.spawn(call(tmp_path), workdir=str(tmp_path), env={})).wait()
    assert outcome.exit_code == 7
    assert outcome.result["error"]["type"] == "SystemExit"
    assert "7" in outcome.result["error"]["message"]


async def test_missing_workdir_is_a_setup_error(server: ForkServer, tmp_path: Path) -> None:
    write_skill(tmp_path, "def run(inputs):\n    return 1\n")
    missing = str(tmp_path / "does-not-exist")
    outcome = await (await server.spawn(call(tmp_path), workdir=missing, env={})).wait()
    assert outcome.exit_code == 126
    assert outcome.result["error"]["type"] == "SandboxSetupError"
    assert "does-not-exist" in outcome.result["error"]["message"]


async def test_output_lines_arrive_while_the_child_runs(server: ForkServer, tmp_path: Path) -> None:
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    write_skill(
        tmp_path,
        """
        import sys
        def run(inputs):
            print("first line")
            print("first error", file=sys.stderr)
            with open(inputs["fifo"]) as f:      # blocks until the test opens it
                word = f.read().strip()
            print("after", word)
            return word
    """,
    )
    child = await server.spawn(
        call(tmp_path, json.dumps({"fifo": str(fifo)}).encode()), workdir=str(tmp_path), env={}
    )
    assert await asyncio.wait_for(child.stdout.readline(), 30) == b"first line\n"
    assert await asyncio.wait_for(child.stderr.readline(), 30) == b"first error\n"
    assert not child.exited  # still blocked on the fifo

    def release() -> None:
        with open(fifo, "w") as f:
            f.write("go\n")

    await asyncio.to_thread(release)
    outcome = await asyncio.wait_for(child.wait(), 30)
    assert outcome.result == {"ok": True, "value": "go"}
    assert await child.stdout.read() == b"after go\n"


async def test_env_is_exactly_what_was_passed(
    server: ForkServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PURAS_PLATFORM_SECRET", "must-not-leak")
    write_skill(
        tmp_path,
        """
        import os
        def run(inputs):
            return dict(os.environ)
    """,
    )
    env = {"ONLY": "this", "PATH": "/usr/bin:/bin"}
    outcome = await (await server.spawn(call(tmp_path), workdir=str(tmp_path), env=env)).wait()
    assert outcome.result["value"] == env
    empty = await (await server.spawn(call(tmp_path), workdir=str(tmp_path), env={})).wait()
    assert empty.result["value"] == {}


async def test_exec_env_is_exactly_what_was_passed(server: ForkServer, tmp_path: Path) -> None:
    env = {"ONLY": "this", "PATH": "/usr/bin:/bin"}
    child = await server.spawn(Exec(["env"]), workdir=str(tmp_path), env=env)
    outcome = await child.wait()
    assert outcome.exit_code == 0 and outcome.result is None
    lines = sorted((await child.stdout.read()).decode().splitlines())
    assert lines == ["ONLY=this", "PATH=/usr/bin:/bin"]


async def test_child_runs_in_workdir(server: ForkServer, tmp_path: Path) -> None:
    skill = tmp_path / "skill"
    work = tmp_path / "job-1"
    work.mkdir()
    write_skill(
        skill,
        """
        import os
        def run(inputs):
            open("out.txt", "w").write("written")
            return os.getcwd()
    """,
    )
    outcome = await (await server.spawn(call(skill), workdir=str(work), env={})).wait()
    assert outcome.result["value"] == str(work)
    assert (work / "out.txt").read_text() == "written"
    child = await server.spawn(Exec(["/bin/pwd"]), workdir=str(work), env={})
    await child.wait()
    assert (await child.stdout.read()).decode().strip() == str(work)


async def test_zygote_sys_path_is_explicit(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    write_skill(lib, "VALUE = 'from sys_path'\n", module="helperlib")
    skill = tmp_path / "skill"
    write_skill(
        skill,
        """
        import sys
        def run(inputs):
            import helperlib
            try:
                import pytest  # the platform's venv has it; the sandbox must not
                leaked = True
            except ImportError:
                leaked = False
            return {"value": helperlib.VALUE, "leaked": leaked, "path": sys.path}
    """,
    )
    async with ForkServer(python=sys.executable, sys_path=[str(lib)], name="paths") as fs:
        outcome = await (await fs.spawn(call(skill), workdir=str(tmp_path), env={})).wait()
    value = outcome.result["value"]
    assert value["value"] == "from sys_path"
    assert value["leaked"] is False
    assert value["path"][:2] == [str(skill), str(lib)]
    assert not any("site-packages" in p for p in value["path"])


async def test_user_module_is_imported_fresh_for_each_job(
    server: ForkServer, tmp_path: Path
) -> None:
    write_skill(
        tmp_path,
        """
        COUNT = 0
        def run(inputs):
            global COUNT
            COUNT += 1
            return COUNT
    """,
    )
    for _ in range(3):
        outcome = await (await server.spawn(call(tmp_path), workdir=str(tmp_path), env={})).wait()
        assert outcome.result["value"] == 1


async def test_exec_exit_code_and_missing_program(server: ForkServer, tmp_path: Path) -> None:
    child = await server.spawn(
        Exec(["sh", "-c", "echo out; echo err >&2; exit 3"]),
        workdir=str(tmp_path),
        env={"PATH": "/usr/bin:/bin"},
    )
    outcome = await child.wait()
    assert (outcome.exit_code, outcome.signal, outcome.result) == (3, None, None)
    assert await child.stdout.read() == b"out\n"
    assert await child.stderr.read() == b"err\n"
    missing = await server.spawn(
        Exec(["no-such-program-xyz"]), workdir=str(tmp_path), env={"PATH": "/usr/bin:/bin"}
    )
    outcome = await missing.wait()
    assert outcome.exit_code == 127
    assert b"no-such-program-xyz" in await missing.stderr.read()


async def test_many_concurrent_spawns(server: ForkServer, tmp_path: Path) -> None:
    write_skill(
        tmp_path,
        """
        import os
        def run(inputs):
            print("job", inputs["i"])
            return {"i": inputs["i"], "square": inputs["i"] ** 2, "pid": os.getpid()}
    """,
    )

    async def one(i: int) -> tuple[int, dict, bytes]:
        child = await server.spawn(
            call(tmp_path, json.dumps({"i": i}).encode()), workdir=str(tmp_path), env={}
        )
        out = await child.stdout.read()
        outcome = await child.wait()
        return i, outcome.result, out

    results = await asyncio.gather(*(one(i) for i in range(50)))
    pids = set()
    for i, result, out in results:
        assert result["ok"] and result["value"]["i"] == i
        assert result["value"]["square"] == i * i
        assert out == f"job {i}\n".encode()
        pids.add(result["value"]["pid"])
    assert len(pids) == 50
    assert server.live_children == 0


async def test_large_payload_and_result(server: ForkServer, tmp_path: Path) -> None:
    write_skill(
        tmp_path,
        """
        def run(inputs):
            return {"blob": inputs["blob"][::-1], "n": len(inputs["blob"])}
    """,
    )
    blob = "abcdefghij" * 200_000  # 2 MB each way
    child = await server.spawn(
        call(tmp_path, json.dumps({"blob": blob}).encode()), workdir=str(tmp_path), env={}
    )
    outcome = await child.wait()
    assert outcome.result["value"]["n"] == len(blob)
    assert outcome.result["value"]["blob"] == blob[::-1]


async def test_bad_arguments_are_rejected(server: ForkServer, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="str"):
        bad_env: dict = {"A": 1}
        await server.spawn(Exec(["true"]), workdir=str(tmp_path), env=bad_env)
    with pytest.raises(SandboxError, match="invalid name"):
        await server.spawn(Exec(["true"]), workdir=str(tmp_path), env={"A=B": "x"})
    with pytest.raises(SandboxError, match="absolute"):
        await server.spawn(Exec(["true"]), workdir="relative/dir", env={})
    with pytest.raises(SandboxError, match="absolute"):
        await server.spawn(
            PythonCall("skills", "main", "run", b"{}"), workdir=str(tmp_path), env={}
        )
    with pytest.raises(SandboxError, match="argv"):
        await server.spawn(Exec([]), workdir=str(tmp_path), env={})
    with pytest.raises(SandboxError, match="PythonCall or an Exec"):
        await server.spawn("run", workdir=str(tmp_path), env={})  # type: ignore[arg-type]
    with pytest.raises(SandboxError, match="bytes"):
        await server.spawn(
            PythonCall(str(tmp_path), "m", "f", "{}"),  # type: ignore[arg-type]
            workdir=str(tmp_path),
            env={},
        )
    # and the server is still fine afterwards
    outcome = await (
        await server.spawn(Exec(["true"]), workdir=str(tmp_path), env={"PATH": "/usr/bin:/bin"})
    ).wait()
    assert outcome.exit_code == 0


async def test_oversized_result_is_dropped_and_reported(tmp_path: Path) -> None:
    write_skill(
        tmp_path,
        """
        def run(inputs):
            return "x" * 100_000
    """,
    )
    async with ForkServer(
        python=sys.executable, sys_path=[], name="small", max_result_bytes=10_000
    ) as fs:
        outcome = await (await fs.spawn(call(tmp_path), workdir=str(tmp_path), env={})).wait()
    assert outcome.exit_code == 0
    assert outcome.result["ok"] is False
    assert outcome.result["error"]["type"] == "ResultTooLarge"
    assert "10000" in outcome.result["error"]["message"]
