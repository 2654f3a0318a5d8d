"""``python -m puras_deployments``: bundles, skill manifests, active pointers."""

from __future__ import annotations

from puras_common.http import serve
from puras_common.migrate import service_migrations
from puras_common.service import ServiceRuntime, run

from puras_deployments.app import create_app
from puras_deployments.settings import DeploymentsSettings
from puras_deployments.store import BundleStore


async def main(settings: DeploymentsSettings | None = None) -> None:
    settings = settings or DeploymentsSettings.load()
    async with ServiceRuntime(settings, migrations=service_migrations("deployments", __file__)) as runtime:
        assert runtime.outbox is not None
        store = BundleStore(settings.data_dir)
        app = create_app(settings, runtime.outbox, store)
        runtime.spawn(serve(app, host=settings.host, port=settings.port), "http")
        await runtime.run_until_stopped()


if __name__ == "__main__":
    run(main)
