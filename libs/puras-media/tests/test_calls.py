"""One media call end to end: refusals before any upstream call, upstream errors with their
own message and a stable code (never billed), slow queues and timeouts, where outputs land in
the drive and with what origin, and how the output URL is found."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from conftest import Caller, media_settings
from puras_media import MediaCancelled, MediaError, MediaService
from puras_testing.drive import RunningDrive
from puras_testing.media.elevenlabs import ElevenLabsStub, Fail, Transcript
from puras_testing.media.fal import Body, Failed, FalStub, Hold, Images, Rejected, Video
from puras_testing.media.files import WEBP, mp4

pytestmark = pytest.mark.asyncio(loop_scope="session")


def marker() -> str:
    return f"m-{uuid.uuid4().hex}"


async def origin(caller: Caller, drive: RunningDrive, path: str) -> dict:
    async with httpx.AsyncClient() as http:
        answer = await http.get(
            f"{drive.url}/internal/drive/{caller.workspace_id}/origin",
            params={"path": path},
            headers={"Authorization": f"Bearer {drive.token}"},
        )
    return answer.json()


async def fetch_signed(drive: RunningDrive, link: str) -> httpx.Response:
    """A signed link as the gateway serves it: relayed to the drive's link route."""
    _, _, rest = link.partition("/v1/drive/files/")
    async with httpx.AsyncClient() as http:
        return await http.get(f"{drive.url}/links/{rest}")


async def test_an_unknown_slug_is_refused_before_any_upstream_call(
    caller: Caller, fal: FalStub
) -> None:
    before = len(fal.requests)
    with pytest.raises(MediaError) as caught:
        await caller.run("openai/gpt-image-3", {"prompt": "x"})
    assert caught.value.code == "unknown_model" and caught.value.status == 400
    assert (
        "did you mean openai/gpt-image-2" in caught.value.message
        and caught.value.pointer == "/model"
    )
    assert len(fal.requests) == before and caller.events == []


async def test_inputs_the_registry_cannot_price_are_refused_before_the_call(
    caller: Caller, fal: FalStub
) -> None:
    m = marker()
    with pytest.raises(MediaError) as caught:
        await caller.run("openai/gpt-image-2", {"prompt": m, "quality": "ultra"})
    assert caught.value.code == "invalid_request" and caught.value.pointer == "/inputs/quality"
    assert "priced values: low, medium, high" in caught.value.message
    with pytest.raises(MediaError) as caught:
        await caller.run(
            "openai/gpt-image-2", {"prompt": m, "image_size": {"width": 8000, "height": 8000}}
        )
    assert "at most 3840x2160" in caught.value.message
    for bad in (
        {"output_path": "../outside.png"},
        {"output_path": "/etc/x.png"},
        {"output_url_path": "images[0"},
        {"kind": "hologram"},
    ):
        with pytest.raises(MediaError) as caught:
            await caller.run("google/imagen-4", {"prompt": m}, **bad)
        assert caught.value.code == "invalid_request", bad
    assert fal.of(m) == [] and caller.events == []


async def test_a_failed_upstream_call_bills_nothing_and_says_what_the_model_said(
    caller: Caller, fal: FalStub
) -> None:
    m = marker()
    fal.script(
        Rejected(
            [
                {
                    "loc": ["body", "prompt"],
                    "msg": "String should have at least 3 characters",
                    "type": "string_too_short",
                }
            ]
        ),
        Failed("GPU out of memory while decoding", status=500),
        Failed(
            [{"msg": "Content policy violation", "type": "content_policy_violation"}], status=422
        ),
        match=m,
    )
    with pytest.raises(MediaError) as rejected:
        await caller.run("google/imagen-4", {"prompt": m})
    assert (
        rejected.value.code == "upstream_rejected"
        and rejected.value.status == 400
        and rejected.value.upstream_status == 422
    )
    assert "String should have at least 3 characters at prompt" in rejected.value.message
    with pytest.raises(MediaError) as failed:
        await caller.run("google/imagen-4", {"prompt": m})
    assert failed.value.code == "upstream_failed" and failed.value.status == 502
    assert "GPU out of memory while decoding" in failed.value.message and failed.value.request_id
    with pytest.raises(MediaError) as policy:
        await caller.run("google/imagen-4", {"prompt": m})
    assert (
        policy.value.code == "upstream_rejected"
        and "Content policy violation" in policy.value.message
    )
    assert caller.events == []  # no usage.recorded, no job.usage


async def test_a_slow_queue_is_polled_until_done(caller: Caller, fal: FalStub) -> None:
    m = marker()
    fal.script(Video(5, polls=4), match=m)
    result = await caller.run("bytedance/seedance-2-t2v", {"prompt": m, "duration": "5"})
    (request,) = fal.of(m)
    assert request.polls == 5 and result["billed_micros"] == 1_820_000
    assert result["meta"] == {"seed": 7, "metrics": {"inference_time": 1.25}}


async def test_a_call_that_outlives_its_wait_is_withdrawn_upstream_and_not_billed(
    caller: Caller, fal: FalStub, eleven: ElevenLabsStub, http: httpx.AsyncClient
) -> None:
    impatient = MediaService.from_settings(
        media_settings(fal, eleven, media_timeout_seconds=0.3), http, producer="media-test"
    )
    m = marker()
    fal.script(Hold(asyncio.Event(), Video(5)), match=m)
    with pytest.raises(MediaError) as caught:
        await caller.run(
            "bytedance/seedance-2-t2v", {"prompt": m, "duration": "5"}, service=impatient
        )
    assert caught.value.code == "upstream_timeout" and caught.value.status == 504
    assert "no result within 0.3 s" in caught.value.message
    (request,) = fal.of(m)
    assert request.cancelled and caller.events == []


async def test_a_cancelled_job_withdraws_its_request(
    caller: Caller, fal: FalStub, drive: RunningDrive
) -> None:
    m = marker()
    fal.script(Hold(asyncio.Event(), Video(5)), match=m)
    stop = asyncio.Event()
    from puras_common.drive import Origin
    from puras_media import CallContext, DriveStore, MediaRequest

    store = DriveStore(
        caller.client,
        workspace_id=caller.workspace_id,
        origin=Origin(caller.job_id, "renderer", "media"),
    )
    call = asyncio.create_task(
        caller.media.run(
            MediaRequest("bytedance/seedance-2-t2v", {"prompt": m, "duration": "5"}),
            context=CallContext(caller.workspace_id, caller.job_id),
            store=store,
            emit=caller.emit,
            cancelled=stop,
        )
    )
    from puras_testing import eventually

    await eventually(lambda: fal.of(m) and fal.of(m)[0].polls > 0)
    stop.set()
    with pytest.raises(MediaCancelled):
        await call
    assert fal.of(m)[0].cancelled and caller.events == []


async def test_outputs_land_in_the_drive_with_their_origin(
    caller: Caller, fal: FalStub, drive: RunningDrive
) -> None:
    m = marker()
    fal.script(Images(), Video(6), Images(), match=m)
    default = await caller.run("google/imagen-4", {"prompt": m})
    assert default["drive_path"].startswith("media/") and default["drive_path"].endswith(".png")
    named = await caller.run(
        "bytedance/seedance-2-i2v",
        {"prompt": m, "image_url": "https://x/a.png", "duration": "6"},
        output_path="renders/spin.mp4",
    )
    assert named["drive_path"] == "renders/spin.mp4" and named["kind"] == "video"
    folder = await caller.run("google/imagen-4", {"prompt": m}, output_path="covers/")
    assert folder["drive_path"].startswith("covers/") and folder["drive_path"].endswith(".png")
    for result in (default, named, folder):
        found = await origin(caller, drive, result["drive_path"])
        assert (found["job_id"], found["skill_name"], found["tool"]) == (
            str(caller.job_id),
            "renderer",
            "media",
        )
        assert (await fetch_signed(drive, result["output_url"])).status_code == 200
    assert (await fetch_signed(drive, named["output_url"])).content == mp4(6)


async def test_several_images_are_all_saved_and_listed(caller: Caller, fal: FalStub) -> None:
    m = marker()
    fal.script(Images(), Images(), match=m)
    result = await caller.run("kuaishou/kling-v3-image", {"prompt": m, "num_images": 3})
    paths = [f["drive_path"] for f in result["files"]]
    assert len(paths) == 3 and paths[0] == result["drive_path"] and len(set(paths)) == 3
    stem = paths[0].removesuffix(".png")
    assert paths[1:] == [f"{stem}-2.png", f"{stem}-3.png"]
    assert all(f["output_url"] for f in result["files"]) and result["billed_micros"] == 3 * 34_000
    named = await caller.run(
        "kuaishou/kling-v3-image", {"prompt": m, "num_images": 2}, output_path="set/cover"
    )
    assert [f["drive_path"] for f in named["files"]] == ["set/cover.png", "set/cover-2.png"]


async def test_the_extension_follows_the_response_not_the_kind(
    caller: Caller, fal: FalStub
) -> None:
    m = marker()
    fal.script(Images(ext="webp"), match=m)
    result = await caller.run("google/nano-banana", {"prompt": m}, kind="image")
    assert result["drive_path"].endswith(".webp")


async def test_output_url_path_points_at_an_unusual_response(caller: Caller, fal: FalStub) -> None:
    m = marker()
    odd = {"outputs": [{"asset": {"url": "{base}/files/" + m + ".webp"}}], "seed": 3}
    fal.script(
        Body(odd, files={f"{m}.webp": WEBP}),
        Body(odd, files={f"{m}.webp": WEBP}),
        Body(odd, files={f"{m}.webp": WEBP}),
        match=m,
    )
    with pytest.raises(MediaError) as caught:
        await caller.run("kuaishou/kling-v3-image", {"prompt": m}, output_url_path="images[0].url")
    assert (
        caught.value.code == "no_output"
        and "{outputs: [{asset: {url: str}}], seed: int}" in caught.value.message
    )
    assert "http" not in caught.value.message  # the output is not handed out unbilled
    result = await caller.run(
        "kuaishou/kling-v3-image", {"prompt": m}, output_url_path="outputs[0].asset.url"
    )
    assert result["drive_path"].endswith(".webp") and result["meta"]["seed"] == 3
    every = await caller.run(
        "kuaishou/kling-v3-image", {"prompt": m}, output_url_path=".outputs[].asset"
    )
    assert every["drive_path"].endswith(".webp")
    assert len(caller.usage) == 2  # the failed one was not billed


async def test_an_output_url_to_a_private_address_is_not_fetched(
    caller: Caller, fal: FalStub
) -> None:
    m = marker()
    fal.script(Body({"image": {"url": "http://127.0.0.2:9/metadata.png"}}), match=m)
    with pytest.raises(MediaError) as caught:
        await caller.run("google/imagen-4", {"prompt": m})
    assert (
        caught.value.code == "download_failed"
        and "private or internal address" in caught.value.message
    )
    assert caller.events == []


async def test_speech_uses_the_named_voice_and_lands_as_audio(
    caller: Caller, eleven: ElevenLabsStub, drive: RunningDrive
) -> None:
    m = marker()
    result = await caller.run(
        "elevenlabs/tts-v3",
        {"text": f"[whispers] {m}", "voice": "roger", "voice_settings": {"stability": 0.3}},
    )
    (request,) = eleven.of(m)
    assert request.path == "/v1/text-to-speech/CwhRBWXzGAHq8TQ4Fs17"
    assert request.body["model_id"] == "eleven_v3" and request.body["voice_settings"] == {
        "stability": 0.3
    }
    assert request.body["output_format"] == "mp3_44100_128"
    assert (
        result["drive_path"].endswith(".mp3")
        and (await origin(caller, drive, result["drive_path"]))["tool"] == "media"
    )
    with pytest.raises(MediaError) as caught:
        await caller.run("elevenlabs/tts-v3", {"text": "x" * 5001})
    assert caught.value.code == "invalid_request" and "5001 characters" in caught.value.message
    eleven.script(Fail(400, "voice_not_found: the voice does not exist"), match=m)
    with pytest.raises(MediaError) as caught:
        await caller.run("elevenlabs/tts-v3", {"text": m, "voice": "abcdefghij0123456789"})
    assert caught.value.code == "upstream_rejected" and "voice_not_found" in caught.value.message


async def test_transcription_takes_a_url_or_a_data_uri(
    caller: Caller, eleven: ElevenLabsStub
) -> None:
    m = marker()
    eleven.script(Transcript("the quick brown fox"), match=m)
    heard = await caller.run(
        "elevenlabs/scribe-v2",
        {"audio": f"https://example.com/{m}.mp3", "keyterms": ["Puras", m], "language_code": "en"},
    )
    (request,) = eleven.of(m)
    assert request.body["cloud_storage_url"] == [f"https://example.com/{m}.mp3"] and request.body[
        "keyterms"
    ] == ["Puras", m]
    assert [w["text"] for w in heard["words"]] == ["the", "quick", "brown", "fox"]
    assert (
        heard["billed_micros"] == 254
    )  # 1.9 s (the last word's end) × $0.40/h × 1.2 = 253.3, rounded up
    inline = await caller.run(
        "elevenlabs/scribe-v2", {"audio": "data:audio/mpeg;base64,SUQzAwAAAAAAAA==", "tag": m}
    )
    assert inline["text"] and eleven.of(m)[-1].files["file"] == b"ID3\x03\x00\x00\x00\x00\x00\x00"
