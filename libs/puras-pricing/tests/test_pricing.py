"""Pricing: exact rates, documented defaults, input-conditional tables, one rounding per row,
and errors that say what could not be priced and where."""

from __future__ import annotations

import uuid
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from puras_common.events import JobStarted, JobUsageRecorded, UsageRecorded, UsageRecordedPayload
from puras_common.events.jobs import InputRequestedPayload, StartedPayload, SucceededPayload
from puras_common.money import ceil_micros
from puras_pricing import (
    COMPUTE,
    ComputeRates,
    MeasureRequired,
    MediaCatalogue,
    Pricebook,
    PricingError,
    UnknownModel,
    UnpricedInput,
    carried,
    compute_events,
    exact,
    left_behind,
    pricebook,
    quote,
    usage_events,
)
from puras_pricing.prices import MEDIA_QUOTES_REMEMBERED


def billed(slug: str, inputs: dict | None = None, **measures) -> int:
    return quote(slug, inputs, **measures).billed_micros


def test_a_five_second_seedance_clip_bills_exactly_the_public_price() -> None:
    q = quote("bytedance/seedance-2-t2v", {"duration": "5"})
    assert q.billed_micros == 1_820_000
    assert q.upstream_micros == Fraction(1_820_000) / Fraction(6, 5)  # the stored rate is exact
    assert (q.unit, q.units_text) == ("second", "5")


def test_rates_are_exact_rationals() -> None:
    assert exact("0.364/1.2") == Fraction(91, 300)
    assert exact("3.00") == 3
    for bad in ("abc", "1/0", "-1", "1/2/3"):
        with pytest.raises(ValueError):
            exact(bad)


def test_an_auto_duration_bills_the_measured_output() -> None:
    assert billed("bytedance/seedance-2-t2v", measured_units="5.04") == 1_834_560
    assert (
        billed("bytedance/seedance-2-fast-i2v", {"duration": "auto"}, measured_units="6")
        == 1_740_000
    )
    with pytest.raises(MeasureRequired, match="duration is 'auto'") as caught:
        quote("bytedance/seedance-2-t2v")
    assert caught.value.pointer == "/units"


def test_an_explicit_duration_wins_over_the_measured_length() -> None:
    # docs/models: per second = rate × the input duration for video.
    assert billed("bytedance/seedance-2-t2v", {"duration": 5}, measured_units="5.2") == 1_820_000


def test_durations_are_read_in_every_documented_spelling() -> None:
    eight = billed("google/veo-3-t2v", {"duration": 8})
    assert eight == 7_200_000
    assert billed("google/veo-3-t2v", {"duration": "8s"}) == eight
    assert billed("google/veo-3-t2v", {"duration": "8"}) == eight
    assert billed("google/veo-3-t2v", {}) == eight  # default "8s"
    for bad in ("soon", "-4s", 0, True):
        with pytest.raises(UnpricedInput) as caught:
            quote("google/veo-3-t2v", {"duration": bad})
        assert caught.value.pointer == "/inputs/duration"


def test_audio_defaults_to_on_for_kling_and_veo() -> None:
    assert quote("kuaishou/kling-v3-t2v").variant == "audio on"
    assert billed("kuaishou/kling-v3-t2v") == 1_010_000  # 5 s (default) × $0.202
    assert billed("kuaishou/kling-v3-i2v", {"generate_audio": False}) == 670_000
    assert billed("kuaishou/kling-v3-t2v", {"voice_control": True, "duration": "10"}) == 2_350_000
    assert (
        quote("kuaishou/kling-v3-t2v", {"generate_audio": False, "voice_control": True}).variant
        == "audio off"
    )
    assert billed("google/veo-3-i2v", {"duration": "4s", "generate_audio": False}) == 960_000
    assert billed("google/veo-3-fast-t2v", {"duration": "6s"}) == 2_880_000


def test_gpt_image_defaults_to_high_quality_at_landscape_4_3() -> None:
    q = quote("openai/gpt-image-2")
    assert (q.variant, q.billed_micros) == ("high · 1024x768", 174_000)
    assert q.inputs["size"] == "1024x768" and q.inputs["image_size"] == "landscape_4_3"
    assert billed("openai/gpt-image-2", {"num_images": 3}) == 522_000
    assert billed("openai/gpt-image-2", {"quality": "auto", "image_size": "square_hd"}) == 253_000
    assert billed("openai/gpt-image-2-edit") == 263_000  # image_size auto, billed at 1024x1024


def test_explicit_sizes_pick_the_row_that_holds_them() -> None:
    assert (
        quote("openai/gpt-image-2", {"quality": "low", "size": "1024x1024"}).billed_micros == 7_200
    )
    assert (
        quote("openai/gpt-image-2", {"size": "1536x1024"}).variant == "high · 1024x1536"
    )  # either orientation
    assert (
        quote("openai/gpt-image-2", {"image_size": {"width": 1080, "height": 1920}}).variant
        == "high · 1920x1080"
    )
    assert (
        quote("openai/gpt-image-2", {"image_size": {"width": 1280, "height": 1280}}).variant
        == "high · 1920x1080"
    )
    with pytest.raises(UnpricedInput, match="at most 3840x2160") as caught:
        quote("openai/gpt-image-2", {"size": "4096x4096"})
    assert caught.value.pointer == "/inputs/size"


def test_unpriced_inputs_name_the_field_and_the_priced_values() -> None:
    with pytest.raises(
        UnpricedInput, match="quality='ultra'; priced values: low, medium, high"
    ) as caught:
        quote("openai/gpt-image-2", {"quality": "ultra"})
    assert caught.value.pointer == "/inputs/quality"
    with pytest.raises(UnpricedInput, match="generate_audio='loud'"):
        quote("google/veo-3-t2v", {"generate_audio": "loud"})
    for count in (0, -1, True, "2", 1.5):
        with pytest.raises(UnpricedInput, match="num_images"):
            quote("google/imagen-4", {"num_images": count})


def test_a_video_reference_is_read_from_the_inputs_never_claimed() -> None:
    assert (
        billed("bytedance/seedance-2-r2v", {"duration": "6", "video_urls": ["https://v"]})
        == 1_308_000
    )
    assert (
        billed("bytedance/seedance-2-r2v", {"duration": "6", "video_url": "https://v"}) == 1_308_000
    )
    assert (
        billed("bytedance/seedance-2-fast-r2v", {"duration": "5", "video_urls": ["https://v"]})
        == 870_000
    )
    # Saying so without sending a video does not buy the cheaper rate.
    without = billed("bytedance/seedance-2-r2v", {"duration": "6", "video_reference": True})
    assert without == 2_178_000


def test_per_call_images_bill_each_image_made() -> None:
    assert billed("bytedance/seedream-v4") == 36_000
    assert billed("bytedance/seedream-v4-edit", {"num_images": 2}) == 72_000
    assert (
        billed("kuaishou/kling-v3-image", measured_units="4") == 136_000
    )  # what the call produced


def test_llm_tokens_are_rounded_up_once_per_row() -> None:
    assert (
        billed("claude/sonnet-4-7", input_tokens=1_000_000, output_tokens=1_000_000) == 21_600_000
    )
    # 1 token in ($0.30/M) + 1 token out ($1.50/M) = 1.8 micros -> 2, not 1 + 2.
    assert billed("claude/haiku-4-5", input_tokens=1, output_tokens=1) == 2
    assert billed("gpt/4o-mini", input_tokens=0, output_tokens=0) == 0
    with pytest.raises(PricingError, match="input_tokens"):
        quote("gpt/5", input_tokens=-1)


def test_platform_tools_are_free() -> None:
    q = quote("web_search")
    assert (q.kind, q.unit, q.billed_micros) == ("tool", "call", 0)


def test_the_margin_is_applied_exactly() -> None:
    assert (
        Pricebook("0").quote("bytedance/seedance-2-t2v", {"duration": 5}).billed_micros == 1_516_667
    )  # ceil(1,516,666.67)
    assert (
        Pricebook("25").quote("bytedance/seedance-2-t2v", {"duration": 5}).billed_micros
        == 1_895_834
    )
    assert Pricebook(Decimal("20")).quote("claude/opus-4-7", input_tokens=10).billed_micros == 180
    with pytest.raises(ValueError, match="negative"):
        Pricebook("-5")


def test_an_unknown_slug_lists_close_matches() -> None:
    with pytest.raises(UnknownModel, match="did you mean bytedance/seedance-2-t2v") as caught:
        quote("bytedance/seedance-2-t2")
    assert caught.value.pointer == "/model" and caught.value.close[0] == "bytedance/seedance-2-t2v"
    with pytest.raises(UnknownModel, match="GET /v1/pricing lists every slug"):
        quote("zzz")


def test_the_per_megapixel_shape() -> None:
    book = Pricebook(
        media=MediaCatalogue.from_data(
            {
                "models": {
                    "acme/upscale": {
                        "kind": "image",
                        "unit": "megapixel",
                        "defaults": {"num_images": 1},
                        "rates": [{"usd": "0.05/1.2"}],
                    }
                }
            }
        )
    )
    q = book.quote("acme/upscale", {"image_size": {"width": 2000, "height": 1500}})
    assert (q.unit, q.units, q.billed_micros) == ("megapixel", Fraction(3), 150_000)
    assert book.quote("acme/upscale", measured_units="2.5").billed_micros == 125_000
    assert book.media.models["acme/upscale"].shape == "per_megapixel"
    with pytest.raises(MeasureRequired):
        book.quote("acme/upscale", {})


@given(
    seconds=st.integers(min_value=1, max_value=15),
    slug=st.sampled_from(
        [
            "bytedance/seedance-2-t2v",
            "bytedance/seedance-2-i2v",
            "bytedance/seedance-2-fast-t2v",
            "google/veo-3-t2v",
        ]
    ),
)
def test_whole_seconds_bill_exactly_the_public_rate_times_seconds(seconds: int, slug: str) -> None:
    per_second = {
        r["slug"]: r["default_rate"]["micros"] for r in pricebook().price_list()["media"]
    }[slug]
    assert billed(slug, {"duration": seconds}) == per_second * seconds


@given(
    tokens_in=st.integers(0, 10**9),
    tokens_out=st.integers(0, 10**9),
    pct=st.sampled_from(["0", "7.5", "20", "33"]),
)
def test_billed_is_the_smallest_whole_micro_at_or_above_the_exact_amount(
    tokens_in: int, tokens_out: int, pct: str
) -> None:
    q = Pricebook(pct).quote("gemini/2.5-flash", input_tokens=tokens_in, output_tokens=tokens_out)
    exact_amount = q.upstream_micros * (1 + Fraction(Decimal(pct)) / 100)
    assert exact_amount <= q.billed_micros < exact_amount + 1


def test_metering_publishes_the_usage_and_its_job_copy_at_the_same_price() -> None:
    job_id, workspace_id = uuid.uuid4(), uuid.uuid4()
    usage = UsageRecordedPayload(
        job_id=job_id,
        key_id=uuid.uuid4(),
        attempt=1,
        kind="media",
        provider="fal",
        model="google/veo-3-t2v",
        inputs={"prompt": "thunder", "duration": "4s"},
    )
    events, q = usage_events(pricebook(), usage, workspace_id=workspace_id, producer="agent-runner")
    recorded, copy = events
    assert isinstance(recorded, UsageRecorded) and isinstance(copy, JobUsageRecorded)
    assert (
        recorded.subject == f"usage.{workspace_id}.recorded"
        and copy.subject == f"job.{job_id}.usage"
    )
    assert (
        copy.payload.usage_id == recorded.id
        and copy.payload.billed_micros == q.billed_micros == 3_600_000
    )
    # The published inputs are what decides the price (defaults applied), not the prompt.
    assert recorded.payload.inputs == {"duration": "4s", "generate_audio": True}
    assert pricebook().quote_usage(recorded.payload).billed_micros == q.billed_micros


def test_compute_is_metered_free_by_default_and_billed_at_the_operators_rates() -> None:
    free = quote(COMPUTE, {"cpu_ms": 1500, "wall_ms": 4000})
    assert (free.kind, free.unit, free.units, free.billed_micros) == (
        "compute",
        "cpu_second",
        Fraction(3, 2),
        0,
    )
    priced = Pricebook(compute=ComputeRates(micros_per_cpu_second=1000, micros_per_wall_second=3))
    # 1.5 CPU s at 1,000 micros, 4 wall s at 3 micros; no margin: the operator set the price.
    assert priced.quote(COMPUTE, {"cpu_ms": 1500, "wall_ms": 4000}).billed_micros == 1512
    # Rounded up once per row, to a whole micro.
    assert priced.quote(COMPUTE, {"cpu_ms": 1, "wall_ms": 0}).billed_micros == 1
    assert priced.quote(COMPUTE, {"cpu_ms": 0, "wall_ms": 1}).billed_micros == 1
    assert priced.price_list()["compute"] == {
        "slug": COMPUTE,
        "micros_per_cpu_second": 1000,
        "micros_per_wall_second": 3,
    }


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True, 10**15])
def test_compute_measures_are_whole_bounded_milliseconds(bad: object) -> None:
    with pytest.raises(PricingError) as refused:
        quote(COMPUTE, {"cpu_ms": bad})
    assert refused.value.pointer == "/inputs/cpu_ms"


def test_compute_rates_are_whole_micros() -> None:
    with pytest.raises(ValueError, match="whole number"):
        ComputeRates(micros_per_cpu_second=-1)


def test_an_attempts_compute_is_published_with_its_measures_on_both_events() -> None:
    command = JobStarted.new(
        StartedPayload(attempt=2, runner="r"),
        producer="test",
        workspace_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
    )
    priced = Pricebook(compute=ComputeRates(micros_per_cpu_second=2000))
    usage, copy = compute_events(
        priced, command, key_id=None, attempt=2, cpu_ms=250, wall_ms=900, producer="test"
    )
    assert isinstance(usage, UsageRecorded) and isinstance(copy, JobUsageRecorded)
    assert usage.payload.inputs == {"cpu_ms": 250, "wall_ms": 900}
    assert (usage.payload.kind, usage.payload.model, usage.payload.attempt) == (
        "compute",
        COMPUTE,
        2,
    )
    assert (copy.payload.cpu_ms, copy.payload.wall_ms, copy.payload.billed_micros) == (
        250,
        900,
        500,
    )
    assert priced.quote_usage(usage.payload).billed_micros == 500  # as billing will charge it


def test_free_compute_goes_to_the_jobs_history_only() -> None:
    """At the default rates of 0 there is nothing to charge: no ``usage.recorded`` for billing,
    and the job's copy says it carries the row itself, with the key the row belongs to."""
    command = JobStarted.new(
        StartedPayload(attempt=1, runner="r"),
        producer="test",
        workspace_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
    )
    key = uuid.uuid4()
    (copy,) = compute_events(
        pricebook(), command, key_id=key, attempt=1, cpu_ms=250, wall_ms=900, producer="test"
    )
    assert isinstance(copy, JobUsageRecorded)
    p = copy.payload
    assert (p.ledger, p.key_id, p.billed_micros, p.cpu_ms, p.wall_ms) == (False, key, 0, 250, 900)
    assert copy.causation_id == command.id
    # Priced, the same attempt goes to billing, and the copy leaves the row to the ledger.
    priced = Pricebook(compute=ComputeRates(micros_per_wall_second=1))
    usage, copy = compute_events(
        priced, command, key_id=key, attempt=1, cpu_ms=0, wall_ms=1, producer="test"
    )
    assert isinstance(usage, UsageRecorded) and copy.payload.ledger  # type: ignore[attr-defined]
    assert copy.payload.billed_micros == 1  # type: ignore[attr-defined]  # a micro, rounded up


def test_free_compute_rides_on_the_outcome_that_has_room_for_it() -> None:
    """An attempt's free compute is carried by the event that ends it, not published; a
    question has no room for it and priced compute goes to billing: both are published first.
    An outcome the scheduler refused gives its row back as a ``job.usage`` of its own."""
    command = JobStarted.new(
        StartedPayload(attempt=1, runner="r"),
        producer="test",
        workspace_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
    )
    free = compute_events(
        pricebook(), command, key_id=None, attempt=1, cpu_ms=5, wall_ms=9, producer="test"
    )
    ended = SucceededPayload(attempt=1, result=None, duration_ms=9)
    outcome, first = carried(free, ended)
    assert first == [] and outcome.compute == free[0].payload
    (alone,) = left_behind(outcome, command, producer="test")
    assert isinstance(alone, JobUsageRecorded) and alone.payload == free[0].payload
    assert (alone.job_id, alone.workspace_id) == (command.job_id, command.workspace_id)
    assert left_behind(ended, command, producer="test") == []
    question = InputRequestedPayload(
        attempt=1,
        request_id=uuid.uuid4(),
        number=1,
        prompt="?",
        answer_schema={},
        timeout_seconds=60,
    )
    assert carried(free, question) == (question, free)
    priced = compute_events(
        Pricebook(compute=ComputeRates(micros_per_cpu_second=2000)),
        command,
        key_id=None,
        attempt=1,
        cpu_ms=5,
        wall_ms=9,
        producer="test",
    )
    assert carried(priced, ended) == (ended, priced)


@given(
    slug=st.sampled_from(sorted(pricebook().models.models)),
    tokens_in=st.integers(0, 10**9),
    tokens_out=st.integers(0, 10**9),
    pct=st.sampled_from(["0", "7.5", "20", "33.3"]),
)
def test_an_llm_row_is_its_tokens_at_the_catalogues_prices_rounded_up_once(
    slug: str, tokens_in: int, tokens_out: int, pct: str
) -> None:
    model = pricebook().models.models[slug]
    upstream = tokens_in * Fraction(model.input_usd_per_mtok) + tokens_out * Fraction(
        model.output_usd_per_mtok
    )
    book = Pricebook(pct)
    for _ in range(2):  # the model's prices as the book keeps them, from the first row on
        q = book.quote(slug, input_tokens=tokens_in, output_tokens=tokens_out)
        assert q.upstream_micros == upstream
        assert q.billed_micros == ceil_micros(upstream * (1 + Fraction(Decimal(pct)) / 100))
        assert q.units == tokens_in + tokens_out


MEDIA_CALLS = [
    ("bytedance/seedance-2-t2v", {"duration": "5"}),
    ("bytedance/seedance-2-t2v", {"duration": 5}),
    ("bytedance/seedance-2-t2v", {"duration": 5.0}),
    ("bytedance/seedance-2-t2v", {}),
    ("bytedance/seedance-2-t2v", None),
    ("openai/gpt-image-2", {"quality": "medium", "size": "1024x1024"}),
    ("openai/gpt-image-2", {"size": "1024x1024", "quality": "medium"}),
    ("openai/gpt-image-2", {"quality": "low", "size": {"width": 1024, "height": 1024}}),
    ("kuaishou/kling-v3-t2v", {"duration": "10", "generate_audio": True}),
    ("kuaishou/kling-v3-t2v", {"duration": "10", "generate_audio": 1}),
    ("kuaishou/kling-v3-t2v", {"duration": "10", "generate_audio": False}),
    ("kuaishou/kling-v3-t2v", {"duration": "10", "generate_audio": 0}),
    ("kuaishou/kling-v3-t2v", {"duration": "10", "prompt": "x" * 500}),
]


def test_a_media_quote_given_again_is_the_quote_a_fresh_book_gives() -> None:
    """A pricebook remembers media quotes by what they depend on: inputs that compare equal
    in Python but differ in type (``1`` and ``True``), or in order, each get their own."""
    book = Pricebook()
    for _ in range(3):
        for slug, inputs in MEDIA_CALLS:
            for measured in (None, "7"):
                try:
                    fresh = Pricebook().quote(slug, inputs, measured_units=measured)
                except PricingError as exc:
                    with pytest.raises(type(exc)):
                        book.quote(slug, inputs, measured_units=measured)
                    continue
                again = book.quote(slug, inputs, measured_units=measured)
                assert again == fresh
                assert dict(again.inputs) == dict(fresh.inputs)
                assert [type(v) for v in again.inputs.values()] == [
                    type(v) for v in fresh.inputs.values()
                ]


def test_the_media_quotes_a_book_remembers_stay_bounded_whatever_a_caller_sends() -> None:
    book = Pricebook()
    for i in range(2_000):  # a caller's whole inputs, prompt and all: priced, not kept
        book.quote("bytedance/seedance-2-t2v", {"duration": "5", "prompt": f"{i} " * 40})
        book.quote("bytedance/seedance-2-t2v", {"duration": "5", "refs": [i]})
    assert len(book._media_quotes) == 0
    for i in range(MEDIA_QUOTES_REMEMBERED + 500):  # short, distinct and priceable
        book.quote("openai/gpt-image-2", {"quality": "medium", "size": "1024x1024", "n": i})
    assert len(book._media_quotes) == MEDIA_QUOTES_REMEMBERED
