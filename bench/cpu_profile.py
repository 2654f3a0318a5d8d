"""CPU time per job, by process, over an echo throughput run: where the platform spends its
cycles (the services, PostgreSQL's backends, nats-server). ``--spy`` also records a py-spy
flame graph of each service."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads
from harness import platform

TICK = os.sysconf("SC_CLK_TCK")
LOAD = "load generator"
SPIED = os.environ.get("BENCH_SPY", "gateway,scheduler,function-runner").split(",")


def cpu_by_process(pg_data: str | None = None) -> dict[tuple[int, str], float]:
    """CPU seconds of this platform's processes: descendants of this process, and the
    PostgreSQL server whose data directory is ``pg_data`` with its backends (other platforms on
    the machine run processes of the same names). Each process's figure holds the children it
    has reaped: a job's process ends within the run, and its CPU time is counted in its
    zygote's (``cutime`` and ``cstime``), or it would be counted nowhere."""
    procs = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:400]
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        procs[int(pid)] = (int(fields[1]), cmd, ticks / TICK)
    roots = {os.getpid()} | {
        pid for pid, (_pp, cmd, _t) in procs.items() if pg_data and pg_data in cmd
    }

    def ours(pid: int) -> bool:
        seen = 0
        while pid > 1 and seen < 64:
            if pid in roots:
                return True
            pid = procs.get(pid, (0, "", 0))[0]
            seen += 1
        return False

    return {(pid, cmd[:160]): t for pid, (_pp, cmd, t) in procs.items() if ours(pid)}


def label(cmd: str) -> str:
    if cmd.startswith("postgres"):
        # A backend names its role: "postgres: puras_gateway puras 127.0.0.1(…)".
        role = cmd.split()[1] if cmd.startswith("postgres:") and len(cmd.split()) > 1 else ""
        return (
            f"postgres ({role.removeprefix('puras_')})"
            if role.startswith("puras_")
            else "postgres (other)"
        )
    if "pginstall/bin/postgres" in cmd:
        return "postgres (other)"
    if "nats-server" in cmd:
        return "nats-server"
    if "_zygote" in cmd:
        return "zygote+jobs"
    if "cpu_profile.py" in cmd:
        return LOAD
    if "-m puras_" in cmd:
        return cmd.split("-m puras_", 1)[1].split()[0]
    return ""


async def main(n: int, spy: bool, as_json: bool = False) -> None:
    async with platform() as running:
        key = await running.workspace("prof")
        await running.push(key, Path(__file__).parent / "projects" / "echo")
        await workloads.sync_round_trip(running, key, m=20)
        spies = []
        if spy:
            for service in SPIED:
                spies.append(
                    subprocess.Popen(
                        [
                            str(Path(sys.executable).parent / "py-spy"),
                            "record",
                            "-p",
                            str(running.pid(service)),
                            "-o",
                            f"/tmp/spy-{service}.txt",
                            "-f",
                            "raw",
                            "-d",
                            "30",
                            "-r",
                            "200",
                            "--nonblocking",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
        pg_data = str(running.engines.postgres.data_dir) if running.engines.postgres else None
        before = cpu_by_process(pg_data)
        result = await workloads.echo_throughput(running, key, n=n)
        after = cpu_by_process(pg_data)
        for p in spies:
            p.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            p.wait(30)
        totals: dict[str, float] = defaultdict(float)
        for proc, t in after.items():
            name = label(proc[1])
            if name:
                totals[name] += t - before.get(proc, 0.0)
        load = totals.pop(LOAD, 0.0)
        per_job = {
            name: round(t * 1000 / n, 2)
            for name, t in sorted(totals.items(), key=lambda kv: -kv[1])
        }
        if as_json:
            print(
                json.dumps(
                    {
                        "jobs": n,
                        "jobs_per_s": round(result["jobs_per_s"], 1),
                        "cpu_ms_per_job": per_job,
                        "platform_total_ms": round(sum(totals.values()) * 1000 / n, 2),
                        "load_generator_ms": round(load * 1000 / n, 2),
                    }
                )
            )
            return
        print(f"{result['jobs_per_s']:.0f} jobs/s over {n} jobs; CPU ms per job:")
        for name, ms in per_job.items():
            print(f"  {name:<22} {ms:6.2f}")
        print(f"  {'platform total':<22} {sum(totals.values()) * 1000 / n:6.2f}")
        print(f"  {LOAD:<22} {load * 1000 / n:6.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--spy", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.spy, args.json))
