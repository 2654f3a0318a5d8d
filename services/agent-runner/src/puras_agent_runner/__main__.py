"""``python -m puras_agent_runner``: runs agentic skills, the LLM tool-use loop of each job."""

from __future__ import annotations

import os

import httpx
from puras.netguard import Policy
from puras_common import consumers
from puras_common.attempts import AttemptClient, CancelWatch
from puras_common.budgets import BudgetClient
from puras_common.drive import DriveClient
from puras_common.payloads import PayloadStore
from puras_common.service import ServiceRuntime, run
from puras_jobhost.prepare import Deployments
from puras_jobhost.sandboxing import decide_sandbox
from puras_media import MediaService
from puras_pricing.models import catalogue
from puras_sandbox import python_for

from puras_agent_runner.fetching import Fetcher
from puras_agent_runner.providers import Providers
from puras_agent_runner.runner import AgentRunner
from puras_agent_runner.search import search_provider
from puras_agent_runner.secrets import DeliveredSecrets
from puras_agent_runner.settings import AgentRunnerSettings

WORK_CONSUMER = consumers.AGENT_RUNNER_WORK
CHILD_WORK_CONSUMER = consumers.AGENT_RUNNER_CHILDREN


async def main(settings: AgentRunnerSettings | None = None) -> None:
    settings = settings or AgentRunnerSettings.load()
    async with ServiceRuntime(settings) as runtime, httpx.AsyncClient(timeout=60.0) as http:
        token = settings.internal_token.get_secret_value()
        root = os.geteuid() == 0
        uid, gid = (settings.sandbox_uid, settings.sandbox_gid) if root else (None, None)
        sandboxed = decide_sandbox(
            settings.sandbox, environment=settings.environment, uid=uid, gid=gid, log=runtime.log
        )
        deployments = Deployments(
            cache_dir=settings.cache_dir,
            deployments_url=settings.deployments_url,
            token=token,
            http=http,
            uid=uid,
            gid=gid,
            max_warm=settings.max_warm_deployments,
            python=settings.job_python or python_for(uid, gid),
            sandboxed=sandboxed,
            egress=settings.egress_policy(
                gateway_url=settings.api_base,
                platform_urls=[settings.deployments_url, settings.drive_url],
            ),
        )
        providers = Providers(settings, catalogue())
        policy = Policy.parse(settings.ssrf_allow)
        fetcher = Fetcher(policy=policy, timeout_seconds=settings.fetch_timeout_seconds)
        search = search_provider(
            settings.search_provider,
            api_key=settings.search_api_key.get_secret_value(),
            base_url=settings.search_base_url,
        )
        if settings.ssrf_allow:
            runtime.log.warning("the SSRF guard is relaxed", allowed=settings.ssrf_allow)
        cancellations = CancelWatch(runtime.nc)
        await cancellations.start()
        media = MediaService.from_settings(settings, http, producer="agent-runner")
        media.budgets = BudgetClient(runtime.nc)
        runner = AgentRunner(
            settings=settings,
            js=runtime.js,
            deployments=deployments,
            payloads=PayloadStore(settings.drive_url, token=token, client=http),
            providers=providers,
            fetcher=fetcher,
            search=search,
            secrets=DeliveredSecrets(runtime.nc),
            cancellations=cancellations,
            drive=DriveClient(settings.drive_url, token=token, client=http),
            media=media,
            attempts=AttemptClient(runtime.nc, runner=settings.instance_id),
            budgets=BudgetClient(runtime.nc),
        )
        runtime.checks["work"] = lambda: {"ok": True, "completed": runner.completed}
        for spec, slots in (
            (WORK_CONSUMER, settings.concurrency),
            (CHILD_WORK_CONSUMER, settings.child_concurrency),
        ):
            runtime.run_work(spec=spec, work=runner.work, concurrency=slots)
        try:
            await runtime.run_until_stopped()
        finally:
            await deployments.close()
            runner.drives.close()
            await providers.aclose()
            await fetcher.aclose()
            if search is not None:
                await search.aclose()


if __name__ == "__main__":
    run(main)
