"""One command in a one-job sandbox, as an agent's ``bash`` tool runs it.

Starts a bubblewrap sandbox whose zygote holds the job's limits (so a command is spawned, not
forked), as the agent runner does for a job, running as a uid of the workspace range when this
process is root. Then runs ``bash -c true`` in it, one at a time, after an idle gap (an agent's
command follows a model call) and back to back, and prints the medians of three moments
counted from the request: the zygote's answer that the command started, the end of its output
(the program has exited), and the runner learning its exit status.

    .venv/bin/python bench/sandbox_command.py [--runs N] [--gap SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time

from puras_sandbox import Exec, ForkServer, Isolation, Limits, bwrap_available

WORKSPACE_UID = 2_000_000 + 4242
"""A uid of the range workspaces get theirs from, as a job runs when the runner is root."""
LIMITS = Limits(cpu_seconds=600, open_files=256, processes=256, file_size_bytes=1 << 30)
COMMAND = Exec(["/bin/bash", "-c", "exec 2>&1\ntrue"])


async def _drained(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


async def series(fs: ForkServer, workdir: str, *, runs: int, gap: float) -> dict[str, float]:
    moments: dict[str, list[float]] = {"started": [], "output ended": [], "exit known": []}
    for i in range(runs + 10):
        await asyncio.sleep(gap)
        t0 = time.perf_counter()
        child = await fs.spawn(
            COMMAND, workdir=workdir, env={"PATH": "/usr/bin:/bin"}, limits=LIMITS
        )
        t1 = time.perf_counter()
        await asyncio.gather(_drained(child.stdout), _drained(child.stderr))
        t2 = time.perf_counter()
        outcome = await child.wait()
        t3 = time.perf_counter()
        if outcome.exit_code != 0:
            raise RuntimeError(f"the command failed: {outcome}")
        if i >= 10:  # the first ones warm the sandbox up
            for name, at in zip(moments, (t1, t2, t3), strict=True):
                moments[name].append((at - t0) * 1000)
    return {name: statistics.median(values) for name, values in moments.items()}


async def main(runs: int, gap: float) -> int:
    uid = WORKSPACE_UID if os.geteuid() == 0 else None
    if not bwrap_available(uid, uid):
        print("bubblewrap is not usable here", file=sys.stderr)
        return 1
    workdir = tempfile.mkdtemp(prefix="puras-command-bench-")
    os.chmod(workdir, 0o777)
    python = "/usr/bin/python3" if uid is not None else sys.executable
    fs = ForkServer(
        python=python,
        sys_path=[],
        uid=uid,
        gid=uid,
        isolation=Isolation(rw_binds=(workdir,), network=False),
        name="command-bench",
        prefork=False,
        limits=LIMITS,
    )
    await fs.start()
    try:
        for label, pause in ((f"after {gap * 1000:.0f} ms idle", gap), ("back to back", 0.0)):
            medians = await series(fs, workdir, runs=runs, gap=pause)
            shown = ", ".join(f"{name} {ms:.3f}" for name, ms in medians.items())
            print(f"bash -c true, {label} (p50 ms from the request, {runs} runs): {shown}")
    finally:
        await fs.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.05, help="idle seconds before each")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.runs, args.gap)))
