"""Every media slug of the catalogue priced through the real call path (submit, poll, fetch,
download into the drive, measure, meter) at the public prices of the spec; every row of every
input-conditional table; the estimated rows too. Billing's own repricing of the published
usage event must agree to the micro."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from conftest import Caller
from puras_media import catalogue
from puras_pricing import media_catalogue, pricebook
from puras_testing.media.elevenlabs import ElevenLabsStub, Transcript
from puras_testing.media.fal import FalStub, Images, Video

pytestmark = pytest.mark.asyncio(loop_scope="session")

SIZES = ["1024x768", "1024x1024", "1024x1536", "1920x1080", "2560x1440", "3840x2160"]
GPT_IMAGE = {  # the reference's price list, in micros per image
    "openai/gpt-image-2": {
        "low": [6_000, 7_200, 6_000, 6_000, 8_400, 14_000],
        "medium": [44_000, 64_000, 50_000, 48_000, 67_000, 121_000],
        "high": [174_000, 253_000, 198_000, 190_000, 266_000, 481_000],
    },
    "openai/gpt-image-2-edit": {
        "low": [13_000, 18_000, 22_000, 20_000, 23_000, 29_000],
        "medium": [52_000, 73_000, 65_000, 64_000, 82_000, 136_000],
        "high": [181_000, 263_000, 214_000, 190_000, 281_000, 496_000],
    },
}


def _size(text: str) -> dict[str, int]:
    w, h = text.split("x")
    return {"width": int(w), "height": int(h)}


CASES: list[tuple[str, dict[str, Any], Any, int]] = [
    (
        slug,
        {
            "quality": quality,
            "image_size": _size(size),
            **({"image_urls": ["https://example.com/a.png"]} if "edit" in slug else {}),
        },
        Images(),
        price,
    )
    for slug, table in GPT_IMAGE.items()
    for quality, prices in table.items()
    for size, price in zip(SIZES, prices, strict=True)
] + [
    # the headline prices, from the documented defaults (high; landscape_4_3 / auto)
    ("openai/gpt-image-2", {"image_size": "square_hd"}, Images(), 253_000),
    ("openai/gpt-image-2-edit", {"image_urls": ["https://example.com/a.png"]}, Images(), 263_000),
    (
        "openai/gpt-image-2",
        {"quality": "medium", "num_images": 2, "image_size": "square_hd"},
        Images(),
        128_000,
    ),
    ("bytedance/seedream-v4", {"num_images": 2}, Images(), 72_000),
    ("bytedance/seedream-v4-edit", {"image_urls": ["https://example.com/a.png"]}, Images(), 36_000),
    ("google/imagen-4", {}, Images(), 60_000),
    ("kuaishou/kling-v3-image", {"num_images": 3}, Images(), 102_000),
    ("bytedance/seedance-2-t2v", {"duration": "5"}, Video(5), 1_820_000),
    (
        "bytedance/seedance-2-t2v",
        {"duration": "auto"},
        Video("5.04"),
        1_834_560,
    ),  # measured from the file
    (
        "bytedance/seedance-2-i2v",
        {"image_url": "https://example.com/a.png", "duration": 8},
        Video(8),
        2_904_000,
    ),
    (
        "bytedance/seedance-2-r2v",
        {"image_urls": ["https://example.com/a.png"], "duration": "6"},
        Video(6),
        2_178_000,
    ),
    (
        "bytedance/seedance-2-r2v",
        {"video_urls": ["https://example.com/a.mp4"], "duration": "6"},
        Video(6),
        1_308_000,
    ),
    (
        "bytedance/seedance-2-fast-t2v",
        {},
        Video("5.04", stated=True),
        1_461_600,
    ),  # duration stated by the response
    (
        "bytedance/seedance-2-fast-i2v",
        {"image_url": "https://example.com/a.png", "duration": "4"},
        Video(4),
        1_160_000,
    ),
    ("bytedance/seedance-2-fast-r2v", {"duration": "5"}, Video(5), 1_450_000),
    (
        "bytedance/seedance-2-fast-r2v",
        {"video_urls": ["https://example.com/a.mp4"], "duration": "5"},
        Video(5),
        870_000,
    ),
    ("kuaishou/kling-v3-t2v", {"generate_audio": False}, Video(5), 670_000),
    ("kuaishou/kling-v3-t2v", {}, Video(5), 1_010_000),  # audio on by default
    ("kuaishou/kling-v3-t2v", {"voice_control": True, "duration": "10"}, Video(10), 2_350_000),
    (
        "kuaishou/kling-v3-i2v",
        {"start_image_url": "https://example.com/a.png", "generate_audio": False},
        Video(5),
        670_000,
    ),
    (
        "kuaishou/kling-v3-i2v",
        {"start_image_url": "https://example.com/a.png", "duration": "3"},
        Video(3),
        606_000,
    ),
    (
        "kuaishou/kling-v3-i2v",
        {"start_image_url": "https://example.com/a.png", "voice_control": True},
        Video(5),
        1_175_000,
    ),
    ("google/veo-3-t2v", {"duration": "4s", "generate_audio": False}, Video(4), 2_400_000),
    ("google/veo-3-t2v", {}, Video(8), 7_200_000),
    (
        "google/veo-3-i2v",
        {"image_url": "https://example.com/a.png", "duration": "4s", "generate_audio": False},
        Video(4),
        960_000,
    ),
    (
        "google/veo-3-i2v",
        {"image_url": "https://example.com/a.png", "duration": "6s"},
        Video(6),
        2_880_000,
    ),
    ("google/veo-3-fast-t2v", {"generate_audio": False}, Video(8), 2_400_000),
    ("google/veo-3-fast-t2v", {"duration": "4s"}, Video(4), 1_920_000),
    (
        "google/veo-3-fast-i2v",
        {"image_url": "https://example.com/a.png", "duration": "6s", "generate_audio": False},
        Video(6),
        1_800_000,
    ),
    ("google/veo-3-fast-i2v", {"image_url": "https://example.com/a.png"}, Video(8), 3_840_000),
    # estimates (docs/media.md): the upstream price × 1.2
    ("google/nano-banana", {}, Images(), 46_800),
    (
        "google/nano-banana-edit",
        {"image_urls": ["https://example.com/a.png"], "num_images": 2},
        Images(),
        93_600,
    ),
    (
        "kuaishou/kling-v3-r2v",
        {"image_urls": ["https://example.com/a.png"], "generate_audio": False},
        Video(5),
        670_000,
    ),
    ("kuaishou/kling-v3-r2v", {"image_urls": ["https://example.com/a.png"]}, Video(5), 1_010_000),
    (
        "kuaishou/kling-v3-r2v",
        {"image_urls": ["https://example.com/a.png"], "voice_control": True},
        Video(5),
        1_175_000,
    ),
    (
        "kuaishou/kling-avatar",
        {"image_url": "https://example.com/a.png", "audio_url": "https://example.com/a.mp3"},
        Video(7),
        966_000,
    ),
    (
        "google/veo-3-r2v",
        {"image_urls": ["https://example.com/a.png"], "duration": "4s", "generate_audio": False},
        Video(4),
        960_000,
    ),
    ("google/veo-3-r2v", {"image_urls": ["https://example.com/a.png"]}, Video(8), 3_840_000),
]


def _id(case: tuple[str, dict[str, Any], Any, int]) -> str:
    slug, inputs, _, price = case
    shown = ",".join(
        f"{k}={v}"
        for k, v in inputs.items()
        if k not in ("image_urls", "image_url", "start_image_url", "audio_url")
    )
    return f"{slug}[{shown}]={price}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
async def test_a_call_bills_the_public_price_of_the_row_its_inputs_hit(
    caller: Caller, fal: FalStub, case: tuple
) -> None:
    slug, inputs, turn, expected = case
    marker = f"m-{uuid.uuid4().hex}"
    fal.script(turn, match=marker)
    sent = {"prompt": f"a test scene {marker}", **inputs}
    result = await caller.run(slug, sent)
    assert result["billed_micros"] == expected
    assert result["model"] == slug and result["drive_path"]
    (usage,) = caller.usage
    # What billing charges: the usage event repriced by the registry, to the micro.
    assert pricebook().quote_usage(usage.payload).billed_micros == expected
    assert (
        usage.payload.job_id == caller.job_id
        and usage.payload.kind == "media"
        and usage.payload.provider == "fal"
    )
    copy = [e for e in caller.events if e.type == "job.usage"]
    assert [c.payload.billed_micros for c in copy] == [expected] and copy[
        0
    ].payload.usage_id == usage.id
    # The inputs reached the model unchanged.
    (request,) = fal.of(marker)
    assert request.inputs == sent


async def test_speech_is_billed_per_character_and_transcription_per_second(
    caller: Caller, eleven: ElevenLabsStub
) -> None:
    spoken = await caller.run("elevenlabs/tts-v3", {"text": "hello, wörld", "voice": "Roger"})
    assert spoken["billed_micros"] == 12 * 120  # 12 code points × $0.00012
    assert spoken["drive_path"].endswith(".mp3") and spoken["kind"] == "audio"
    v2 = await caller.run("elevenlabs/tts-v2", {"text": "x" * 1000})
    assert v2["billed_micros"] == 120_000
    marker = f"m-{uuid.uuid4().hex}"
    eleven.script(Transcript("one two three", seconds=30), match=marker)
    heard = await caller.run(
        "elevenlabs/scribe-v2", {"audio_url": f"https://example.com/{marker}.mp3"}
    )
    assert heard["billed_micros"] == 4_000  # 30 s × $0.40/h × 1.2
    assert (
        heard["text"] == "one two three"
        and heard["drive_path"] == ""
        and heard["output_url"] is None
    )
    assert [pricebook().quote_usage(u.payload).billed_micros for u in caller.usage] == [
        1_440,
        120_000,
        4_000,
    ]


async def test_every_priced_media_slug_has_a_route_and_every_route_a_price() -> None:
    priced = set(media_catalogue().models)
    routed = set(catalogue().routes)
    assert priced == routed
    tested = {case[0] for case in CASES} | {
        "elevenlabs/tts-v3",
        "elevenlabs/tts-v2",
        "elevenlabs/scribe-v2",
    }
    assert tested == priced
    conditional = {slug for slug, m in media_catalogue().models.items() if m.shape == "conditional"}
    for slug in conditional:
        rows = {r.label for r in media_catalogue().models[slug].rates}
        hit = {
            pricebook().quote(c[0], c[1], measured_units="5").variant for c in CASES if c[0] == slug
        }
        assert hit == rows, f"{slug}: rows {rows - hit} are not tested"
