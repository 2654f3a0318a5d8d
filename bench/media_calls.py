"""The media library's own cost per call, beyond the provider's time.

Calls a model through the real library (fal queue adapter: submit, status polls, result, the
download into a real drive service, the usage events) against the wire-format stub answering at
once, and reports the wall time per call; then the rate at which a large output streams from the
provider into the drive.

    .venv/bin/python bench/media_calls.py [--calls 50] [--megabytes 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path


async def main(calls: int, megabytes: int) -> None:
    import httpx
    from puras_common.drive import DriveClient, Origin
    from puras_media import CallContext, DriveStore, MediaRequest, MediaService, MediaSettings
    from puras_testing.drive import run_drive
    from puras_testing.infra import start_infra
    from puras_testing.media.fal import Body, Images, fal_stub

    base = Path(tempfile.mkdtemp(prefix="puras-media-bench-"))
    base.chmod(0o711)
    async with contextlib.AsyncExitStack() as stack:
        infra = await stack.enter_async_context(start_infra())
        fal = await stack.enter_async_context(fal_stub())
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=120))
        drive = await stack.enter_async_context(
            run_drive(infra.service_env("drive"), data_dir=str(base))
        )
        settings = MediaSettings(
            fal_queue_url=fal.base_url,
            fal_api_key="fal-test-key",
            media_poll_seconds=0.001,
            media_poll_max_seconds=0.001,
        )
        media = MediaService.from_settings(settings, http, producer="bench")
        workspace, job = uuid.uuid4(), uuid.uuid4()
        store = DriveStore(
            DriveClient(drive.url, token=drive.token, client=http),
            workspace_id=workspace,
            origin=Origin(job, "bench", "media"),
        )
        context = CallContext(workspace_id=workspace, job_id=job)

        async def emit(events: list) -> None:
            pass

        times = []
        for i in range(calls + 1):
            fal.script(Images(), match=f"bench-{i}")
            t0 = time.perf_counter()
            await media.run(
                MediaRequest("google/imagen-4", {"prompt": f"bench-{i}"}),
                context=context,
                store=store,
                emit=emit,
            )
            if i:  # the first call opens the connections
                times.append((time.perf_counter() - t0) * 1000)
        big = bytes(megabytes * 1024 * 1024)
        fal.script(
            Body({"video": {"url": "{base}/files/big.mp4"}}, files={"big.mp4": big}),
            match="bench-big",
        )
        t0 = time.perf_counter()
        await media.run(
            MediaRequest("bytedance/seedance-2-t2v", {"prompt": "bench-big", "duration": "5"}),
            context=context,
            store=store,
            emit=emit,
        )
        seconds = time.perf_counter() - t0
    shutil.rmtree(base, ignore_errors=True)
    print(
        f"one image call (submit, 1 status poll, result, download, save with origin, sign), {calls} calls:"
    )
    print(
        f"  median {statistics.median(times):6.2f} ms   min {min(times):6.2f} ms   max {max(times):6.2f} ms"
    )
    print(
        f"a {megabytes} MiB output, provider → drive: {seconds:.2f} s ({megabytes / seconds:.0f} MiB/s)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--megabytes", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.megabytes))
