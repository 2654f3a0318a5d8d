"""Metrics and traces: what an operator watches, in one place for every service.

**Metrics** are Prometheus metrics (``prometheus-client``), named ``puras_*``, served with
``/livez`` and ``/readyz`` on each process's *ops listener* (``PURAS_OPS_PORT``; see
``docs/operations.md``). Labels are bounded sets only (route templates, event types, consumer
names, model slugs from the price table), never a job, key or workspace id.

**Traces** are OpenTelemetry traces, one per job across every service. A job's trace id *is*
its id (a UUIDv7 is 128 bits, as a trace id is), so any service joins the job's trace from the
job id alone, and nothing needs to be stored to keep a trace whole across the outbox. Each
event about a job travels with a W3C ``traceparent`` header naming the span that published it;
consumers start their spans as its children. Spans are exported over OTLP/HTTP when
``PURAS_OTLP_ENDPOINT`` is set; otherwise tracing costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Final
from uuid import UUID

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from puras_common.logging import get_logger

log = get_logger("puras_common.observability")

REGISTRY: Final = CollectorRegistry(auto_describe=True)
"""Every ``puras_*`` metric of this process (kept apart from the client's default registry)."""

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_DURATION = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)

HTTP_REQUESTS: Final = Counter(
    "puras_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ("service", "route", "method", "status"),
    registry=REGISTRY,
)
HTTP_SECONDS: Final = Histogram(
    "puras_http_request_seconds",
    "Time to answer an HTTP request (to the first byte of a stream).",
    ("service", "route", "method"),
    buckets=_LATENCY,
    registry=REGISTRY,
)
JOBS: Final = Gauge(
    "puras_jobs",
    "Jobs in the scheduler's queue by state (queued, dispatched, running) and skill kind.",
    ("state", "kind"),
    registry=REGISTRY,
)
JOBS_FINISHED: Final = Counter(
    "puras_jobs_finished",
    "Jobs that reached a terminal state, by state and skill kind.",
    ("state", "kind"),
    registry=REGISTRY,
)
QUEUE_DEPTH: Final = Gauge(
    "puras_queue_depth",
    "Queued jobs by why they wait: ready (a slot will take them), no_credit, concurrency.",
    ("reason",),
    registry=REGISTRY,
)
DISPATCH_SECONDS: Final = Histogram(
    "puras_dispatch_latency_seconds",
    "From a job's submission to its dispatch.",
    ("kind",),
    buckets=_LATENCY,
    registry=REGISTRY,
)
WORK_SECONDS: Final = Histogram(
    "puras_job_duration_seconds",
    "How long a runner held one job's work, from taking it to acknowledging it.",
    ("consumer",),
    buckets=_DURATION,
    registry=REGISTRY,
)
WORK_IN_FLIGHT: Final = Gauge(
    "puras_work_in_flight",
    "Work messages a runner process holds now.",
    ("consumer",),
    registry=REGISTRY,
)
SANDBOX_SPAWN_SECONDS: Final = Histogram(
    "puras_sandbox_spawn_seconds",
    "Time to start a job's process in the sandbox (a fork from the warm parent, or a new one).",
    buckets=_LATENCY,
    registry=REGISTRY,
)
EGRESS_DECISIONS: Final = Counter(
    "puras_egress_decisions",
    "Connections jobs asked the egress proxy for, by decision (allowed, refused) and why "
    "(public, gateway, operator, test, or the kind of destination refused).",
    ("decision", "why"),
    registry=REGISTRY,
)
CONSUMER_PENDING: Final = Gauge(
    "puras_consumer_pending",
    "Messages in the stream not yet delivered to the durable consumer (its lag).",
    ("stream", "consumer"),
    registry=REGISTRY,
)
CONSUMER_ACK_PENDING: Final = Gauge(
    "puras_consumer_ack_pending",
    "Messages delivered to the durable consumer and not yet acknowledged.",
    ("stream", "consumer"),
    registry=REGISTRY,
)
PROJECTION_LAG_SECONDS: Final = Gauge(
    "puras_projection_lag_seconds",
    "Age of the newest event a projection has applied, when it last applied one.",
    ("consumer",),
    registry=REGISTRY,
)
EVENTS_APPLIED: Final = Counter(
    "puras_events_applied",
    "Events applied by a projection (first deliveries; redeliveries are skipped).",
    ("consumer",),
    registry=REGISTRY,
)
DEAD_LETTERS: Final = Counter(
    "puras_dead_letters",
    "Messages parked on the dead-letter stream, by consumer.",
    ("consumer",),
    registry=REGISTRY,
)
OUTBOX_LAG_ROWS: Final = Gauge(
    "puras_outbox_lag_rows",
    "Committed outbox rows the relay has not yet published.",
    ("service",),
    registry=REGISTRY,
)
OUTBOX_HELD_SECONDS: Final = Gauge(
    "puras_outbox_held_seconds",
    "How long the relay's next committed row has waited, unpublished and with no row published"
    " since, for an older transaction still open somewhere in the database (0: none waits).",
    ("service",),
    registry=REGISTRY,
)
OUTBOX_PUBLISHED: Final = Counter(
    "puras_outbox_published",
    "Outbox rows published to JetStream.",
    ("service",),
    registry=REGISTRY,
)
LEDGER_ENTRIES: Final = Counter(
    "puras_ledger_entries",
    "Ledger entries posted, by kind (grant, charge, …).",
    ("kind",),
    registry=REGISTRY,
)
USAGE_MICROS: Final = Counter(
    "puras_usage_billed_micros",
    "Micros billed for usage, by model or media slug.",
    ("model",),
    registry=REGISTRY,
)
USAGE_TOKENS: Final = Counter(
    "puras_usage_tokens",
    "Tokens billed, by model and direction (input, output).",
    ("model", "direction"),
    registry=REGISTRY,
)
SSE_STREAMS: Final = Gauge(
    "puras_sse_streams_open",
    "Server-Sent Event streams open on this gateway.",
    registry=REGISTRY,
)
SSE_FRAMES: Final = Counter(
    "puras_sse_frames_total",
    "Live SSE frames sent by this gateway: written to the connection by the fan-out itself"
    " (direct), or handed to the stream's task (queued).",
    ["path"],
    registry=REGISTRY,
)
PROVIDER_SECONDS: Final = Histogram(
    "puras_provider_request_seconds",
    "Model and media provider calls, by provider and outcome (ok or the error class).",
    ("provider", "outcome"),
    buckets=_DURATION,
    registry=REGISTRY,
)
PROVIDER_ERRORS: Final = Counter(
    "puras_provider_errors",
    "Failed provider calls, by provider and error class.",
    ("provider", "error"),
    registry=REGISTRY,
)
WEBHOOK_ATTEMPTS: Final = Counter(
    "puras_webhook_attempts",
    "Webhook delivery attempts, by outcome (succeeded, status: a non-2xx answer, error: no "
    "answer, refused: by the SSRF guard).",
    ("outcome",),
    registry=REGISTRY,
)
WEBHOOK_SECONDS: Final = Histogram(
    "puras_webhook_attempt_seconds",
    "Time a receiver took to answer a webhook attempt.",
    buckets=_LATENCY,
    registry=REGISTRY,
)
WEBHOOKS_DISABLED: Final = Counter(
    "puras_webhooks_disabled",
    "Endpoints disabled because they kept failing.",
    registry=REGISTRY,
)
SCHEDULE_FIRES: Final = Counter(
    "puras_schedule_fires",
    "Fire times of schedules decided, by outcome (fired, or duplicate: already fired).",
    ("outcome",),
    registry=REGISTRY,
)
SCHEDULE_LATENESS_SECONDS: Final = Histogram(
    "puras_schedule_lateness_seconds",
    "How late a schedule's fire time was decided, from the fire time.",
    buckets=_LATENCY,
    registry=REGISTRY,
)
UP: Final = Gauge(
    "puras_service_ready",
    "1 while this process is ready (connected, migrated, not draining).",
    ("service",),
    registry=REGISTRY,
)


def snapshot() -> dict[str, float]:
    """This process's metrics in brief, for the ops page: each counter and gauge summed over
    its labels, each histogram's count; the queue's gauges also by label."""
    out: dict[str, float] = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            name = sample.name
            if family.type == "histogram" and not name.endswith("_count"):
                continue
            if family.type == "counter" and not name.endswith("_total"):
                continue
            key = name.removeprefix("puras_")
            out[key] = out.get(key, 0.0) + sample.value
            if family.name in ("puras_queue_depth", "puras_jobs"):
                detail = key + ":" + ",".join(sample.labels.values())
                out[detail] = out.get(detail, 0.0) + sample.value
    return out


def render() -> tuple[bytes, str]:
    """The metrics page and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


@contextlib.contextmanager
def timed(histogram: Histogram, **labels: str) -> Iterator[None]:
    """Observe the block's duration."""
    start = time.perf_counter()
    try:
        yield
    finally:
        (histogram.labels(**labels) if labels else histogram).observe(time.perf_counter() - start)


@contextlib.contextmanager
def gauged(gauge: Gauge) -> Iterator[None]:
    """Count the block as open in ``gauge`` while it runs."""
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


async def observe_call(provider: str, call: Callable[[], Awaitable[Any]]) -> Any:
    """Run one provider call, recording its latency and, if it failed, its error class."""
    start = time.perf_counter()
    try:
        result = await call()
    except Exception as exc:
        name = type(exc).__name__
        PROVIDER_SECONDS.labels(provider=provider, outcome=name).observe(
            time.perf_counter() - start
        )
        PROVIDER_ERRORS.labels(provider=provider, error=name).inc()
        raise
    PROVIDER_SECONDS.labels(provider=provider, outcome="ok").observe(time.perf_counter() - start)
    return result


# -- HTTP


class HttpMetrics:
    """ASGI middleware: requests by route template (not path: ids would explode the series)."""

    def __init__(self, app: Any, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500, "seen": False}

        async def sending(message: Mapping[str, Any]) -> None:
            if message["type"] == "http.response.start" and not status["seen"]:
                status["code"], status["seen"] = message["status"], True
                self._observe(scope, status["code"], time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if not status["seen"]:
                self._observe(scope, 500, time.perf_counter() - start)

    def _observe(self, scope: Mapping[str, Any], code: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "GET")
        HTTP_REQUESTS.labels(self.service, template, method, str(code)).inc()
        HTTP_SECONDS.labels(self.service, template, method).observe(seconds)


# -- JetStream consumer lag

WATCHED: Final[set[tuple[str, str]]] = set()
"""The ``(stream, durable)`` consumers this process reads; their lag is polled."""


async def watch_consumers(js: Any, *, every: float = 5.0) -> None:
    """Keep the lag gauges of this process's durable consumers current, until cancelled."""
    while True:
        for stream, durable in sorted(WATCHED):
            try:
                info = await js.consumer_info(stream, durable)
            except Exception as exc:  # a lag reading is best effort; the next round retries
                log.debug("consumer info unavailable", consumer=durable, error=repr(exc))
                continue
            CONSUMER_PENDING.labels(stream, durable).set(info.num_pending or 0)
            CONSUMER_ACK_PENDING.labels(stream, durable).set(info.num_ack_pending or 0)
        await asyncio.sleep(every)


# -- Traces

TRACEPARENT: Final = "traceparent"
_next_trace_id: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "puras_next_trace_id", default=None
)


class JobTraceIds(RandomIdGenerator):
    """Root spans started inside :func:`job_span` get the job's trace id."""

    def generate_trace_id(self) -> int:
        wanted = _next_trace_id.get()
        return wanted if wanted is not None else super().generate_trace_id()


_provider: TracerProvider | None = None


def setup_tracing(
    service: str,
    *,
    endpoint: str | None = None,
    processor: SpanProcessor | None = None,
) -> TracerProvider | None:
    """Install this process's tracer: OTLP/HTTP to ``endpoint`` (default
    ``PURAS_OTLP_ENDPOINT``), or ``processor`` (tests); neither leaves tracing off."""
    global _provider
    endpoint = endpoint or os.environ.get("PURAS_OTLP_ENDPOINT")
    if processor is None and not endpoint:
        return None
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"puras-{service}"}), id_generator=JobTraceIds()
    )
    if processor is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        url = endpoint.rstrip("/") + "/v1/traces"  # type: ignore[union-attr]
        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=url), schedule_delay_millis=500)
    provider.add_span_processor(processor)
    _provider = provider
    return provider


def shutdown_tracing() -> None:
    """Flush and stop the exporter (at the end of the process)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def tracing() -> bool:
    return _provider is not None


def _tracer() -> trace.Tracer:
    assert _provider is not None
    return _provider.get_tracer("puras")


def trace_id_of(job_id: UUID | str) -> int:
    """A job's trace id: its 128-bit id."""
    return (job_id if isinstance(job_id, UUID) else UUID(str(job_id))).int


def traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def parse_traceparent(value: str | None) -> SpanContext | None:
    """The span context a ``traceparent`` header names, or None if it is not one."""
    if not value:
        return None
    parts = value.strip().split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & 1))


@contextlib.contextmanager
def job_span(
    name: str,
    job_id: UUID | str | None,
    *,
    parent: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[trace.Span | None]:
    """A span in ``job_id``'s trace, the child of the ``parent`` traceparent if it names a span
    of that trace; current while the block runs. Nothing at all when tracing is off."""
    if _provider is None or job_id is None:
        yield None
        return
    trace_id = trace_id_of(job_id)
    remote = parse_traceparent(parent)
    ctx = None
    if remote is not None and remote.trace_id == trace_id:
        ctx = trace.set_span_in_context(NonRecordingSpan(remote))
    token = _next_trace_id.set(trace_id)
    try:
        span = _tracer().start_span(
            name,
            context=ctx,
            kind=kind,
            attributes={"puras.job_id": str(job_id), **(attributes or {})},
        )
    finally:
        _next_trace_id.reset(token)
    with trace.use_span(span, end_on_exit=True):
        yield span


def inject(headers: dict[str, str], job_id: UUID | str | None) -> dict[str, str]:
    """Add the ``traceparent`` of the current span, if it belongs to ``job_id``'s trace."""
    if _provider is None or job_id is None:
        return headers
    current = trace.get_current_span().get_span_context()
    if current.is_valid and current.trace_id == trace_id_of(job_id):
        headers[TRACEPARENT] = traceparent(current)
    return headers


def publish_headers(
    event_id: UUID | str, job_id: UUID | str | None, subject: str
) -> dict[str, str]:
    """Headers of one published event: its id for JetStream's dedupe and, when tracing, the
    ``traceparent`` of a short ``publish`` span in its job's trace."""
    headers = {"Nats-Msg-Id": str(event_id)}
    if _provider is None or job_id is None:
        return headers
    current = trace.get_current_span().get_span_context()
    if current.is_valid and current.trace_id == trace_id_of(job_id):
        headers[TRACEPARENT] = traceparent(current)
        return headers
    parts = subject.split(".")
    what = ".".join(["job", *parts[2:]]) if parts[0] == "job" else subject
    with job_span(f"publish {what}", job_id, kind=SpanKind.PRODUCER) as span:
        if span is not None:
            headers[TRACEPARENT] = traceparent(span.get_span_context())
    return headers
