"""One model call's cost on the runner's side, by HTTP transport.

Calls the Anthropic adapter (``AnthropicModel``) against the wire-format model stub, served
from a process of its own with no latency, with a conversation of ten tool calls, and reports
the p50 CPU time of the calling thread and the p50 wall time per call. Twice: through the
SDK's default transport (httpx, whose HTTP/1.1 parser is h11, in Python) and through the one
the adapter uses (the SDK's aiohttp client, whose parser is C). The calls are spaced by
``--gap`` seconds, as an agent's are by the model's latency: after an idle gap a VM runs the
same code markedly slower than back to back (``--gap 0``).

    .venv/bin/python bench/provider_call.py [--calls 300] [--gap 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


async def main(calls: int, gap: float) -> None:
    import anthropic
    from agent_loop_overhead import _model_process
    from puras_agent_runner.conversation import Message, Text, ToolCall, ToolResult, ToolSpec
    from puras_agent_runner.providers.anthropic import AnthropicModel
    from puras_agent_runner.providers.base import ModelRequest

    messages = [Message("user", [Text("go")])]
    for i in range(10):
        messages.append(Message("assistant", [ToolCall(f"c{i}", "bash", {"command": "true"})]))
        result = ToolResult(f"c{i}", "bash", (Text("exit code: 0\n(no output)"),))
        messages.append(Message("user", [result]))
    tool = ToolSpec(
        name="bash",
        description="Run a shell command.",
        input_schema={"type": "object", "properties": {"command": {"type": "string"}}},
    )
    request = ModelRequest("claude-sonnet-4-7", "You are a benchmark.", messages, [tool], 1024)
    async with _model_process(0.0, 10**6, "bash") as (env, _served):
        base_url = env["PURAS_AGENT_RUNNER_ANTHROPIC_BASE_URL"]
        for transport in ("httpx (the SDK's default)", "aiohttp (the adapter's)"):
            model = AnthropicModel(api_key="bench", base_url=base_url, timeout_seconds=30)
            if transport.startswith("httpx"):
                default = anthropic.AsyncAnthropic(
                    api_key="bench", base_url=base_url, max_retries=0, timeout=30
                )
                await model.client.close()
                model.client = default
            cpu, wall = [], []
            for i in range(calls + 20):
                await asyncio.sleep(gap)
                c0, w0 = time.thread_time(), time.perf_counter()
                await model.complete(request)
                if i >= 20:  # the first calls open the connection and warm the caches
                    cpu.append((time.thread_time() - c0) * 1000)
                    wall.append((time.perf_counter() - w0) * 1000)
            await model.aclose()
            print(
                f"{transport:28s} cpu p50 {statistics.median(cpu):5.2f} ms   "
                f"wall p50 {statistics.median(wall):5.2f} ms   ({calls} calls, {gap * 1000:g} ms apart)"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.05)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.gap))
