"""Trace propagation over a real JetStream, checked with the SDK's in-memory exporter: an event
published inside a job's span carries its ``traceparent``, and the consumer's span joins the
same trace (the job's id) as that span's child."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from nats.js import JetStreamContext
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from puras_common import observability
from puras_common.bus import publish
from puras_common.events import JobStarted
from puras_common.events.jobs import StartedPayload
from puras_common.ids import new_id

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    observability.setup_tracing("test", processor=SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        observability.shutdown_tracing()


async def test_a_consumer_span_is_the_child_of_the_publisher_in_the_jobs_trace(
    js: JetStreamContext, spans: InMemorySpanExporter
) -> None:
    job_id = new_id()
    event = JobStarted.new(
        StartedPayload(attempt=1, runner="r"), producer="t", workspace_id=new_id(), job_id=job_id
    )
    with observability.job_span("runner work", job_id) as work:
        assert work is not None
        await publish(js, [event])
    sub = await js.pull_subscribe(event.subject, stream="JOBS")
    try:
        [msg] = await sub.fetch(1, timeout=5)
    finally:
        await sub.unsubscribe()
    header = msg.headers[observability.TRACEPARENT]
    assert header == observability.traceparent(work.get_span_context())
    with observability.job_span("projection apply", job_id, parent=header):
        pass
    finished = {s.name: s for s in spans.get_finished_spans()}
    runner, applied = finished["runner work"], finished["projection apply"]
    assert runner.context.trace_id == applied.context.trace_id == uuid.UUID(str(job_id)).int
    assert applied.parent is not None and applied.parent.span_id == runner.context.span_id


async def test_a_traceparent_of_another_trace_or_malformed_is_not_followed(
    spans: InMemorySpanExporter,
) -> None:
    job_id = new_id()
    other = f"00-{uuid.uuid4().hex}-{'1' * 16}-01"
    for parent in (other, "garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", None):
        with observability.job_span("apply", job_id, parent=parent):
            pass
    for span in spans.get_finished_spans():
        assert span.context.trace_id == uuid.UUID(str(job_id)).int and span.parent is None


async def test_tracing_off_costs_nothing_and_adds_no_header() -> None:
    assert not observability.tracing()
    with observability.job_span("x", new_id()) as span:
        assert span is None
    headers = observability.publish_headers(new_id(), new_id(), "job.x.started")
    assert list(headers) == ["Nats-Msg-Id"]
