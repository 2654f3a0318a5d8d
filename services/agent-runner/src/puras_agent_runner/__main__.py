"""``python -m puras_agent_runner``: runs agentic skills, the LLM tool-use loop of each job."""

from __future__ import annotations

import os

import httpx
from puras_common import streams, subjects
from puras_common.attempts import AttemptClient
from puras_common.bus import ConsumerSpec, WorkRunner
from puras_common.models import catalogue
from puras_common.payloads import PayloadStore
from puras_common.service import ServiceRuntime, run
from puras_function_runner.prepare import Deployments
from puras_sandbox import python_for

from puras_agent_runner.cancellation import Cancellations
from puras_agent_runner.fetching import Fetcher
from puras_agent_runner.providers import Providers
from puras_agent_runner.runner import AgentRunner
from puras_agent_runner.search import search_provider
from puras_agent_runner.secrets import NoSecrets
from puras_agent_runner.settings import AgentRunnerSettings

WORK_CONSUMER = ConsumerSpec(streams.WORK, "agent-runner-work", (subjects.RUN_AGENT,), ack_wait_seconds=60.0)


async def main(settings: AgentRunnerSettings | None = None) -> None:
    settings = settings or AgentRunnerSettings.load()
    async with ServiceRuntime(settings) as runtime, httpx.AsyncClient(timeout=60.0) as http:
        token = settings.internal_token.get_secret_value()
        root = os.geteuid() == 0
        uid, gid = (settings.sandbox_uid, settings.sandbox_gid) if root else (None, None)
        deployments = Deployments(
            cache_dir=settings.cache_dir,
            deployments_url=settings.deployments_url,
            token=token,
            http=http,
            uid=uid,
            gid=gid,
            max_warm=settings.max_warm_deployments,
            python=settings.job_python or python_for(uid, gid),
        )
        providers = Providers(settings, catalogue())
        fetcher = Fetcher(allow_private=settings.fetch_allow_private, timeout_seconds=settings.fetch_timeout_seconds)
        search = search_provider(
            settings.search_provider, api_key=settings.search_api_key.get_secret_value(), base_url=settings.search_base_url
        )
        if settings.fetch_allow_private:
            runtime.log.warning("the SSRF guard is relaxed: fetches may reach loopback and private addresses")
        cancellations = Cancellations()
        runner = AgentRunner(
            settings=settings,
            js=runtime.js,
            deployments=deployments,
            payloads=PayloadStore(settings.drive_url, token=token, client=http),
            providers=providers,
            fetcher=fetcher,
            search=search,
            secrets=NoSecrets(),
            cancellations=cancellations,
            attempts=AttemptClient(runtime.nc, runner=settings.instance_id),
        )
        runtime.checks["work"] = lambda: {"ok": True, "completed": runner.completed}
        work = WorkRunner(js=runtime.js, spec=WORK_CONSUMER, work=runner.work, concurrency=settings.concurrency)
        runtime.spawn(cancellations.follow(runtime.js), "cancel-requests")
        runtime.spawn(work.run(), WORK_CONSUMER.durable)
        try:
            await runtime.run_until_stopped()
        finally:
            await deployments.close()
            await providers.aclose()
            await fetcher.aclose()
            if search is not None:
                await search.aclose()  # type: ignore[attr-defined]


if __name__ == "__main__":
    run(main)
