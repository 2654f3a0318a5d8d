"""``python -m puras_agent_runner``: runs agentic skills.

Declares its work-queue consumer and answers health; it takes ``run.agent`` messages once the
agent loop is in place, so until then agentic jobs wait, dispatched, in the queue.
"""

from __future__ import annotations

from puras_common import streams, subjects
from puras_common.bus import ConsumerSpec, ensure_consumer
from puras_common.service import ServiceRuntime, run

from puras_agent_runner.settings import AgentRunnerSettings

WORK_CONSUMER = ConsumerSpec(streams.WORK, "agent-runner-work", (subjects.RUN_AGENT,), ack_wait_seconds=60.0)


async def main(settings: AgentRunnerSettings | None = None) -> None:
    settings = settings or AgentRunnerSettings.load()
    async with ServiceRuntime(settings) as runtime:
        await ensure_consumer(runtime.js, WORK_CONSUMER)
        await runtime.run_until_stopped()


if __name__ == "__main__":
    run(main)
