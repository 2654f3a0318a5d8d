"""The agent loop's own cost per step, beyond the model call.

Runs an agent job of N steps (each a bash call, then set_output) on the real runner, against the
wire-format model stub answering after a fixed latency, and reports the wall time of the
runner's attempt (from the command to its terminal event) per step, minus the provider's share
of the step: the time the stub spent on its request, from its arrival to the answer's last
byte (the fixed latency, its own parsing of the conversation and the rendering of the stream).
What is left is the runner's: the job's start and end (its sandbox, drive and events) spread
over the steps, SDK request building and stream parsing, the step and usage events, the
tool.called and tool.completed events (stored by JetStream), and a bash command started in the
job's sandbox. The wall time per step minus the fixed latency alone is reported beside it
(``beyond_latency_ms_per_step``).

The stub plays the model provider, so it serves from a process of its own: in the runner's
event loop its request parsing and stream rendering would be counted as the loop's cost.

    .venv/bin/python bench/agent_loop_overhead.py [--steps 20] [--runs 5] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "services" / "agent-runner" / "tests"))


async def main(steps: int, runs: int, latency: float, tool: str, as_json: bool = False) -> None:
    import shutil
    import tempfile

    import httpx
    from agent_harness import Harness, LocalDeployments
    from puras_agent_runner.fetching import Fetcher
    from puras_agent_runner.providers import Providers
    from puras_agent_runner.runner import AgentRunner
    from puras_agent_runner.settings import AgentRunnerSettings
    from puras_common.access import inbox_prefix
    from puras_common.attempts import CancelWatch
    from puras_common.bus import connect_nats
    from puras_common.consumers import provision_bus
    from puras_common.drive import DriveClient
    from puras_common.payloads import PayloadStore
    from puras_pricing.models import catalogue
    from puras_testing.drive import run_drive
    from puras_testing.infra import start_infra
    from puras_testing.models import ModelStub
    from puras_testing.web import web_stub

    base = Path(tempfile.mkdtemp(prefix="puras-agent-bench-"))
    base.chmod(0o711)
    (base / "drive").mkdir(mode=0o711)
    async with contextlib.AsyncExitStack() as stack:
        infra = await stack.enter_async_context(start_infra())
        models, served = await stack.enter_async_context(_model_process(latency, steps, tool))
        web = await stack.enter_async_context(web_stub())
        http = await stack.enter_async_context(httpx.AsyncClient())
        admin = await connect_nats(infra.nats_url(), name="bench-admin")
        await provision_bus(admin.jetstream())
        drive = await stack.enter_async_context(
            run_drive(infra.service_env("drive"), data_dir=str(base / "drive"))
        )
        env = {k.removeprefix("PURAS_AGENT_RUNNER_").lower(): v for k, v in models.items()}
        settings = AgentRunnerSettings(
            cache_dir=base / "runner", drive_url=drive.url, internal_token=drive.token, **env
        )
        nc = await connect_nats(
            infra.nats_url("agent-runner"), name="bench", inbox_prefix=inbox_prefix("agent-runner")
        )
        deployments = LocalDeployments(settings.cache_dir)
        providers = Providers(settings, catalogue())
        cancels = CancelWatch(nc)
        await cancels.start()
        runner = AgentRunner(
            settings=settings,
            js=nc.jetstream(),
            deployments=deployments,
            payloads=PayloadStore(drive.url, token=drive.token, client=http),
            providers=providers,
            fetcher=Fetcher(),
            search=None,
            secrets=_NoSecrets(),
            cancellations=cancels,
            drive=DriveClient(drive.url, token=drive.token, client=http),
        )
        harness = Harness(
            runner, deployments, ModelStub(), web, admin, settings, base / "drive", drive=drive
        )
        results: dict[str, list[float]] = {}
        beyond_latency: dict[str, list[float]] = {}
        try:
            for model in ("claude/sonnet-4-7", "gpt/4o"):
                deployment = harness.push(
                    {
                        "skills/b/skill.yaml": f"entrypoint: SKILL.md\nmodel: {model}\noutput_schema: {{type: object}}\n",
                        "skills/b/SKILL.md": f"bench {model}",
                    }
                )
                for run in range(runs + 1):
                    # The attempt alone: the harness's read-back of the job's stored events
                    # (what its tests check) is no part of the job's cost.
                    command = harness.command(deployment, "b", {"prompt": "go"})
                    t0, provider = time.perf_counter(), served.value
                    terminal = await runner.attempt(command)
                    elapsed = time.perf_counter() - t0
                    assert terminal.type == "job.succeeded", terminal
                    provider = served.value - provider
                    if run:  # the first run warms the fork server and the SDK clients
                        results.setdefault(model, []).append((elapsed - provider) / steps * 1000)
                        beyond_latency.setdefault(model, []).append(
                            (elapsed / steps - latency) * 1000
                        )
        finally:
            await deployments.close()
            runner.drives.close()  # the work folder's shared mount and the scratch tmpfs
            await providers.aclose()
            await nc.close()
            await admin.close()
    shutil.rmtree(base, ignore_errors=True)
    if as_json:
        print(
            json.dumps(
                {
                    "steps": steps,
                    "runs": runs,
                    "model_latency_ms": latency * 1000,
                    "tool": tool,
                    "overhead_ms_per_step": {
                        model: sorted(values) for model, values in results.items()
                    },
                    "beyond_latency_ms_per_step": {
                        model: sorted(values) for model, values in beyond_latency.items()
                    },
                }
            )
        )
        return
    print(
        f"loop overhead per step beyond the model call, and beyond its {latency * 1000:.0f} ms of latency ({steps} steps, {tool} each step, {runs} runs):"
    )
    for model, values in results.items():
        print(
            f"  {model:20s} median {statistics.median(values):6.2f} ms   min {min(values):6.2f} ms   max {max(values):6.2f} ms"
            f"   (beyond latency: median {statistics.median(beyond_latency[model]):6.2f} ms)"
        )


def _turn(steps: int, tool: str, request: Any) -> Any:
    """The bench's model: ``tool`` until the conversation holds ``steps - 1`` results of it,
    then ``set_output``."""
    from puras_testing.models import Call, Reply

    results = 0
    for message in request.body.get("messages", []):
        content = message.get("content")
        if message.get("role") == "tool":
            results += 1
        elif isinstance(content, list):
            results += sum(
                1 for b in content if isinstance(b, dict) and b.get("type") == "tool_result"
            )
    if results < steps - 1:
        return Reply(tool_calls=[Call(tool, {"command": "true"} if tool == "bash" else {})])
    return Reply(tool_calls=[Call("set_output", {"ok": True})])


def _serve_model(latency: float, steps: int, tool: str, ready: Any, stop: Any, served: Any) -> None:
    from puras_testing.models import model_stub

    def add(seconds: float) -> None:
        with served.get_lock():
            served.value += seconds

    async def serve() -> None:
        async with model_stub() as stub:
            stub.latency_seconds = latency
            stub.fallback = functools.partial(_turn, steps, tool)
            stub.on_served = add
            ready.put(stub.env())
            await asyncio.to_thread(stop.wait)

    asyncio.run(serve())


@contextlib.asynccontextmanager
async def _model_process(
    latency: float, steps: int, tool: str
) -> AsyncIterator[tuple[dict[str, str], Any]]:
    """The model stub in a process of its own; yields the runner settings pointing at it, and
    the seconds it has spent answering so far (a shared ``Value``)."""
    ctx = multiprocessing.get_context("spawn")
    ready, stop, served = ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
    process = ctx.Process(target=_serve_model, args=(latency, steps, tool, ready, stop, served))
    process.start()
    try:
        yield await asyncio.to_thread(ready.get, True, 60), served
    finally:
        stop.set()
        await asyncio.to_thread(process.join, 10)
        if process.is_alive():
            process.kill()


class _NoSecrets:
    async def for_job(self, command: object, token: str) -> dict[str, str]:
        return {}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument(
        "--tool",
        default="bash",
        help="the tool called each step: bash, or set_output-free 'web_search'",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.steps, args.runs, args.latency, args.tool, args.json))
