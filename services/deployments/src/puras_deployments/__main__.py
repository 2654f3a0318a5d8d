"""``python -m puras_deployments``: bundles, skill manifests, active pointers, builds, secrets."""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

from nats.aio.msg import Msg
from puras_common.attempts import attempt_is_live
from puras_common.http import serve
from puras_common.migrate import service_migrations
from puras_common.secret_delivery import SUBJECT as SECRETS_SUBJECT
from puras_common.service import ServiceRuntime, run
from puras_jobhost.sandboxing import decide_sandbox
from puras_sandbox import python_for

from puras_deployments import wheelhouse
from puras_deployments.app import Service, create_app
from puras_deployments.builds import Builder
from puras_deployments.mirror import S3Mirror
from puras_deployments.settings import DeploymentsSettings
from puras_deployments.store import BundleStore
from puras_deployments.tenant_secrets import Secrets
from puras_deployments.vault import MasterKeys


def build_sandbox(settings: DeploymentsSettings, log: Any) -> wheelhouse.BuildSandbox:
    """How this host runs builds: as the unprivileged uid when root, in bubblewrap when it can."""
    root = os.geteuid() == 0
    uid, gid = (settings.sandbox_uid, settings.sandbox_gid) if root else (None, None)
    # A build runs tenant code: like the runners, never silently unsandboxed in production.
    use_bwrap = decide_sandbox(
        settings.sandbox, environment=settings.environment, uid=uid, gid=gid, log=log
    )
    if not root:
        log.warning("not running as root: builds run as this process's own uid")
    tools_root = settings.data_dir / "tools"
    tools_root.mkdir(parents=True, exist_ok=True)
    extra = {
        k: v
        for k, v in os.environ.items()
        if k.upper() in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
    }
    if index := os.environ.get("PURAS_DEPLOYMENTS_PIP_INDEX_URL"):
        extra["PIP_INDEX_URL"] = index
    egress_dir = settings.data_dir / "egress"
    egress_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(egress_dir, 0o711)
    if use_bwrap and any(k.upper() in ("HTTP_PROXY", "HTTPS_PROXY") for k in extra):
        log.warning(
            "builds use the operator's HTTP(S)_PROXY, with the host network: the egress proxy "
            "does not confine them (see docs/isolation.md)"
        )
    return wheelhouse.BuildSandbox(
        python=settings.build_python or python_for(uid, gid),
        uid=uid,
        gid=gid,
        bwrap=use_bwrap,
        tools_dir=wheelhouse.install_tools(tools_root),
        timeout_seconds=settings.build_timeout_seconds,
        memory_bytes=settings.build_memory_bytes,
        max_wheelhouse_bytes=settings.max_wheelhouse_bytes,
        extra_env=extra,
        egress=settings.egress_policy(gateway_url="", platform_urls=[]),
        egress_dir=egress_dir,
    )


async def main(settings: DeploymentsSettings | None = None) -> None:
    settings = settings or DeploymentsSettings.load()
    async with ServiceRuntime(
        settings, migrations=service_migrations("deployments", __file__)
    ) as runtime:
        assert runtime.outbox is not None
        mirror = None
        if settings.store == "s3":
            mirror = S3Mirror(
                bucket=settings.s3_bucket, endpoint=settings.s3_endpoint, region=settings.s3_region
            )
            await mirror.start()
            runtime.log.info("bundles and wheelhouses shared in S3", bucket=settings.s3_bucket)
        store = BundleStore(settings.data_dir, mirror=mirror)
        keys = MasterKeys.from_settings(
            settings.secrets_key.get_secret_value(),
            (k.get_secret_value() for k in settings.secrets_previous_keys),
        )
        secrets = Secrets(
            runtime.outbox,
            keys,
            job_token_key=settings.job_token_key.get_secret_value(),
            confirm=functools.partial(attempt_is_live, runtime.nc),
        )
        work_root = settings.data_dir / "builds"
        work_root.mkdir(parents=True, exist_ok=True)
        os.chmod(settings.data_dir, 0o711)
        os.chmod(work_root, 0o711)
        builder = Builder(
            outbox=runtime.outbox,
            store=store,
            sandbox=None,
            work_root=work_root,
            concurrency=settings.build_concurrency,
            lease_seconds=settings.build_lease_seconds,
            max_log_bytes=settings.build_max_log_bytes,
        )
        service = Service(
            settings=settings, outbox=runtime.outbox, store=store, secrets=secrets, builder=builder
        )
        if rewrapped := await secrets.rewrap(runtime.db):
            runtime.log.info("re-wrapped data keys under the current master key", count=rewrapped)
        answering: set[asyncio.Task[Any]] = set()

        async def on_secrets_request(msg: Msg) -> None:
            # Answered concurrently: each answer waits on the database.
            task = asyncio.create_task(secrets.answer(runtime.db, msg))
            answering.add(task)
            task.add_done_callback(answering.discard)

        runtime.spawn(
            secrets.listen(settings.require_database_url(), schema=runtime.schema),
            "secrets-listener",
        )
        await runtime.nc.subscribe(SECRETS_SUBJECT, queue="deployments", cb=on_secrets_request)
        runtime.spawn(serve(create_app(service), host=settings.host, port=settings.port), "http")
        # Probing bubblewrap and copying the build tools takes a moment: pushes are accepted
        # meanwhile, and their builds start once the builder runs.
        builder.sandbox = await asyncio.to_thread(build_sandbox, settings, runtime.log)
        runtime.spawn(builder.run(), "builder")
        try:
            await runtime.run_until_stopped()
        finally:
            if mirror is not None:
                await mirror.close()


if __name__ == "__main__":
    run(main)
