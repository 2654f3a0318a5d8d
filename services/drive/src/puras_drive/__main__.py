"""``python -m puras_drive``: workspace storage and payload objects."""

from __future__ import annotations

from puras_common.http import serve
from puras_common.migrate import service_migrations
from puras_common.service import ServiceRuntime, run

from puras_drive.app import create_app
from puras_drive.payloads import PayloadFiles
from puras_drive.settings import DriveSettings


async def main(settings: DriveSettings | None = None) -> None:
    settings = settings or DriveSettings.load()
    async with ServiceRuntime(settings, migrations=service_migrations("drive", __file__)) as runtime:
        app = create_app(settings, PayloadFiles(settings.data_dir))
        runtime.spawn(serve(app, host=settings.host, port=settings.port), "http")
        await runtime.run_until_stopped()


if __name__ == "__main__":
    run(main)
