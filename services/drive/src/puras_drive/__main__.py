"""``python -m puras_drive``: workspace storage, signed links and payload objects."""

from __future__ import annotations

from uuid import UUID

from puras_common import consumers
from puras_common.bus import ProjectionRunner
from puras_common.http import serve
from puras_common.migrate import service_migrations
from puras_common.service import ServiceRuntime, run

from puras_drive import objects
from puras_drive.app import create_app
from puras_drive.drives import Drives
from puras_drive.objects import Metadata
from puras_drive.settings import DriveSettings
from puras_drive.signing import Signer
from puras_drive.storage import open_backend
from puras_drive.uids import WorkspaceUids

OBJECTS_CONSUMER = consumers.DRIVE_OBJECTS


async def main(settings: DriveSettings | None = None) -> None:
    settings = settings or DriveSettings.load()
    uids: WorkspaceUids | None = None

    def owner_of(folder: str) -> tuple[int, int] | None:
        """A workspace folder's owner: its uid, once assigned (every write assigns it first)."""
        try:
            uid = uids.known(UUID(folder)) if uids is not None else None
        except ValueError:
            return None
        return (uid, uid) if uid is not None else None

    backend = open_backend(
        settings.backend,
        data_dir=settings.data_dir,
        owner=settings.file_owner(),
        owner_of=owner_of if settings.uid_per_workspace else None,
        s3_endpoint=settings.s3_endpoint,
        s3_bucket=settings.s3_bucket,
        s3_region=settings.s3_region,
    )
    signer = Signer(
        settings.signing_key.get_secret_value(),
        retired=settings.retired_keys(),
        base_url=settings.links_base,
    )
    async with ServiceRuntime(
        settings, migrations=service_migrations("drive", __file__)
    ) as runtime:
        assert runtime.outbox is not None
        await backend.start()
        try:
            uids = WorkspaceUids(
                runtime.db, base=settings.sandbox_uid_base, count=settings.sandbox_uid_count
            )
            await uids.load()
            drives = Drives(
                backend,
                Metadata(runtime.outbox, js=runtime.js),
                signer,
                quota_bytes=settings.quota_bytes,
            )
            projection = ProjectionRunner(
                js=runtime.js, outbox=runtime.outbox, spec=OBJECTS_CONSUMER, apply=objects.apply
            )
            runtime.spawn(projection.run(), OBJECTS_CONSUMER.durable)
            runtime.checks["storage"] = lambda: {"ok": True, "backend": backend.name}
            runtime.spawn(
                serve(
                    create_app(settings, drives, backend, uids=uids),
                    host=settings.host,
                    port=settings.port,
                ),
                "http",
            )
            runtime.log.info("storage", backend=backend.name)
            await runtime.run_until_stopped()
        finally:
            await backend.close()


if __name__ == "__main__":
    run(main)
