"""The model-portable helpers: family or auto → one slug, the mode from the inputs, @Image tags
kept or rewritten, durations snapped, and clear errors where a family cannot do the mode."""

from __future__ import annotations

import pytest
from puras_media import PortableError, catalogue
from puras_media.portable import (
    generate_audio,
    generate_image,
    generate_video,
    rewrite_tags,
    transcribe,
)

CAT = catalogue()
A, B, C = "https://example.com/a.png", "https://example.com/b.png", "https://example.com/c.png"


@pytest.mark.parametrize(
    ("family", "inputs", "slug"),
    [
        ("bytedance/seedance", {}, "bytedance/seedance-2-t2v"),
        ("bytedance/seedance", {"image": A}, "bytedance/seedance-2-i2v"),
        ("bytedance/seedance", {"refs": [A]}, "bytedance/seedance-2-r2v"),
        ("bytedance/seedance-fast", {"image": A}, "bytedance/seedance-2-fast-i2v"),
        ("kuaishou/kling", {"refs": [A]}, "kuaishou/kling-v3-r2v"),
        (
            "kuaishou/kling",
            {"image": A, "lipsync_audio": "https://example.com/v.mp3"},
            "kuaishou/kling-avatar",
        ),
        ("google/veo", {}, "google/veo-3-t2v"),
        ("google/veo-fast", {"image": A}, "google/veo-3-fast-i2v"),
        ("auto", {}, "bytedance/seedance-2-t2v"),
        (
            "auto",
            {"image": A, "lipsync_audio": "https://example.com/v.mp3"},
            "kuaishou/kling-avatar",
        ),
        ("google/veo-3-i2v", {"image": A}, "google/veo-3-i2v"),
    ],
)
def test_the_inputs_fix_the_mode_and_the_family_the_slug(
    family: str, inputs: dict, slug: str
) -> None:
    resolved = generate_video("a slow pan across a harbour", model=family, **inputs)
    assert resolved.request.model == slug


def test_inputs_take_each_model_s_own_field_names() -> None:
    kling = generate_video("spin", model="kuaishou/kling", image=A, duration=5, audio=True).request
    assert kling.inputs == {
        "prompt": "spin",
        "start_image_url": A,
        "duration": "5",
        "generate_audio": True,
    }
    veo = generate_video("spin", model="google/veo", image=A, duration=8).request
    assert veo.inputs == {
        "prompt": "spin",
        "image_url": A,
        "duration": "8s",
        "generate_audio": False,
    }
    avatar = generate_video(
        "calm delivery", image=A, lipsync_audio="https://example.com/v.mp3"
    ).request
    assert avatar.inputs == {
        "image_url": A,
        "audio_url": "https://example.com/v.mp3",
        "prompt": "calm delivery",
    }


def test_only_kling_does_lip_sync() -> None:
    for family in (
        "bytedance/seedance",
        "google/veo",
        "google/veo-fast",
        "bytedance/seedance-fast",
    ):
        with pytest.raises(
            PortableError, match=f"{family} cannot do lip-sync; only kuaishou/kling does"
        ):
            generate_video("talk", model=family, image=A, lipsync_audio="https://example.com/v.mp3")
    with pytest.raises(PortableError, match="lip-sync needs image="):
        generate_video("talk", lipsync_audio="https://example.com/v.mp3")


def test_a_family_without_the_mode_names_those_with_it() -> None:
    with pytest.raises(PortableError) as caught:
        generate_video("x", model="google/veo-fast", refs=[A])
    assert str(caught.value) == (
        "google/veo-fast cannot do reference-to-video; families that can: bytedance/seedance, bytedance/seedance-fast, kuaishou/kling, google/veo"
    )
    with pytest.raises(PortableError, match="google/imagen cannot do image editing"):
        generate_image("make it neon", model="google/imagen", refs=[A])
    with pytest.raises(
        PortableError,
        match="is a text-to-video model, but these inputs ask for image-to-video; use bytedance/seedance-2-i2v",
    ):
        generate_video("x", model="bytedance/seedance-2-t2v", image=A)
    with pytest.raises(PortableError, match="unknown model family 'acme/movie'"):
        generate_video("x", model="acme/movie")


def test_image_tags_are_kept_for_models_that_read_them_and_prose_for_the_rest() -> None:
    prompt = "@Image1 hands a cup to @Image2 by the window"
    seedance = generate_video(prompt, model="bytedance/seedance", refs=[A, B]).request
    assert seedance.inputs["prompt"] == prompt and seedance.inputs["image_urls"] == [A, B]
    kling = generate_video(prompt, model="kuaishou/kling", refs=[A, B]).request
    assert kling.inputs["prompt"] == prompt
    veo = generate_video(prompt, model="google/veo", refs=[A, B]).request
    assert (
        veo.inputs["prompt"]
        == "the first reference image hands a cup to the second reference image by the window"
    )
    edit = generate_image("put @Image2 on @Image1", refs=[A, B], model="openai/gpt-image").request
    assert edit.model == "openai/gpt-image-2-edit"
    assert edit.inputs == {
        "prompt": "put the second reference image on the first reference image",
        "image_urls": [A, B],
    }
    assert rewrite_tags("@Image11", refs=11, keep=False) == "reference image 11"


def test_a_tag_without_its_reference_is_an_error() -> None:
    with pytest.raises(
        PortableError, match=r"mentions @Image3, but only 2 refs were given \(@Image1…@Image2\)"
    ):
        generate_video("@Image3 waves", refs=[A, B])
    with pytest.raises(PortableError, match="mentions @Image1, but no refs were given"):
        generate_video("@Image1 waves", image=A)


def test_durations_snap_to_the_model_s_set_with_a_warning() -> None:
    veo = generate_video("x", model="google/veo", duration=5)
    assert veo.request.inputs["duration"] == "6s"
    assert veo.warnings == ("duration 5 s snapped to 6 s: google/veo-3-t2v makes 4, 6, 8 s clips",)
    assert generate_video("x", model="google/veo", duration=7).request.inputs["duration"] == "8s"
    assert generate_video("x", model="google/veo", duration=20).request.inputs["duration"] == "8s"
    seedance = generate_video("x", model="bytedance/seedance", duration=2)
    assert seedance.request.inputs["duration"] == "4"
    assert seedance.warnings == (
        "duration 2 s snapped to 4 s: bytedance/seedance-2-t2v makes 4–15 s clips",
    )
    assert generate_video("x", model="bytedance/seedance", duration=9).warnings == ()
    assert generate_video("x", model="kuaishou/kling", duration=3).request.inputs["duration"] == "3"
    lipsync = generate_video("x", image=A, lipsync_audio="https://example.com/v.mp3", duration=10)
    assert "duration" not in lipsync.request.inputs and lipsync.warnings == (
        "duration is ignored for lip-sync: the clip is as long as the audio",
    )
    for bad in (0, -3, "5", True):
        with pytest.raises(PortableError, match="duration must be a positive number"):
            generate_video("x", duration=bad)


def test_last_frame_only_where_the_model_has_one() -> None:
    seedance = generate_video("x", model="bytedance/seedance", image=A, last_frame=B)
    assert seedance.request.inputs["end_image_url"] == B and seedance.warnings == ()
    kling = generate_video("land on the end card", model="kuaishou/kling", last_frame=B)
    assert kling.request.inputs["end_image_url"] == B
    veo = generate_video("x", model="google/veo", image=A, last_frame=B)
    assert "end_image_url" not in veo.request.inputs
    assert veo.warnings == (
        "last_frame is ignored: google/veo cannot end on a set frame (Seedance and Kling can)",
    )


def test_aspect_ratio_and_resolution_go_where_the_model_takes_them() -> None:
    veo = generate_video("x", model="google/veo", aspect_ratio="1:1", resolution="1080p")
    assert veo.request.inputs["resolution"] == "1080p" and "aspect_ratio" not in veo.request.inputs
    assert veo.warnings == ("aspect_ratio '1:1' is ignored: google/veo-3-t2v takes 16:9, 9:16",)
    kling = generate_video("x", model="kuaishou/kling", image=A, aspect_ratio="9:16")
    assert kling.warnings == (
        "aspect_ratio '9:16' is ignored: kuaishou/kling-v3-i2v does not take one",
    )
    gpt = generate_image("x", model="openai/gpt-image", aspect_ratio="16:9", n=2).request
    assert gpt.inputs == {"prompt": "x", "num_images": 2, "image_size": "landscape_16_9"}
    imagen = generate_image("x", model="google/imagen", aspect_ratio="4:3", resolution="2K").request
    assert imagen.inputs == {"prompt": "x", "aspect_ratio": "4:3", "resolution": "2K"}


def test_image_helpers_pick_by_refs_and_bound_n() -> None:
    assert generate_image("a red bicycle").request.model == "google/nano-banana"
    assert generate_image("make it neon", refs=[A]).request.model == "google/nano-banana-edit"
    assert (
        generate_image("x", model="bytedance/seedream", refs=[A, B, C]).request.model
        == "bytedance/seedream-v4-edit"
    )
    with pytest.raises(PortableError, match="makes at most 4 images per call; n=5"):
        generate_image("x", model="openai/gpt-image", n=5)
    with pytest.raises(
        PortableError,
        match=r"refs\[0\] must be a URL \(sign a drive path with puras.drive.url first\)",
    ):
        generate_image("x", refs=["uploads/photo.png"])
    with pytest.raises(
        PortableError,
        match="bytedance/seedance-2-t2v is a text-to-video model; generate_image cannot use it",
    ):
        generate_image("x", model="bytedance/seedance-2-t2v")


def test_speech_knobs_v3_ignores_and_v2_honours() -> None:
    v3 = generate_audio(
        "[excited] It's here!", voice="Aria", stability=0.3, style=0.5, speed=1.1, language="en"
    )
    assert v3.request.model == "elevenlabs/tts-v3"
    assert v3.request.inputs == {
        "text": "[excited] It's here!",
        "voice": "Aria",
        "language_code": "en",
        "voice_settings": {"stability": 0.3},
    }
    assert [w.split(" is ignored")[0] for w in v3.warnings] == ["style", "speed"]
    v2 = generate_audio(
        "[excited] It's here!", model="elevenlabs/tts-v2", similarity_boost=0.8, speed=1.1
    )
    assert v2.request.model == "elevenlabs/tts-v2"
    assert v2.request.inputs["voice_settings"] == {"similarity_boost": 0.8, "speed": 1.1}
    assert v2.warnings == (
        "elevenlabs/tts-v2 does not read audio tags: bracketed cues such as [excited] may be spoken",
    )
    for bad in ({"stability": 1.5}, {"speed": 2}, {"language": "english"}):
        with pytest.raises(PortableError):
            generate_audio("hi", **bad)


def test_transcription_arguments() -> None:
    resolved = transcribe("https://example.com/a.mp3", keyterms=["Puras"], language_code="de")
    assert resolved.request.model == "elevenlabs/scribe-v2"
    assert resolved.request.inputs == {
        "audio": "https://example.com/a.mp3",
        "keyterms": ["Puras"],
        "language_code": "de",
    }
    with pytest.raises(PortableError, match="audio must be an https URL"):
        transcribe("uploads/a.mp3")
    with pytest.raises(PortableError, match="keyterms has 101 entries; the limit is 100"):
        transcribe("https://example.com/a.mp3", keyterms=["k"] * 101)
    assert (
        transcribe("https://example.com/a.mp3", keyterms=["k"] * 100).request.inputs["keyterms"]
        == ["k"] * 100
    )
