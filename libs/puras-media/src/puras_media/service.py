"""One media call, start to end: check the slug and price the inputs, call the provider, save
every output file into the drive with its origin, measure what was produced, publish one
``usage.recorded`` (and its ``job.usage`` copy), and answer
``{model, kind, drive_path, output_url, request_id, billed_micros, billed_usd, meta}``.

Nothing reaches the provider for an unknown slug or inputs the registry cannot price, and a
call that ends in an error is never billed. The inputs go to the model unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any
from uuid import UUID

import httpx
from puras.drive import relative
from puras.netguard import Policy
from puras_common.budgets import BudgetClient, HoldRefused
from puras_common.envelope import Event
from puras_common.events import UsageRecordedPayload
from puras_common.logging import get_logger
from puras_common.money import format_usd
from puras_common.numbers import NumberError, client_fraction
from puras_common.ssrf import BlockedURL, FetchError, open_url
from puras_pricing import (
    MeasureRequired,
    Pricebook,
    PricingError,
    UnknownModel,
    decimal_text,
    pricebook,
    usage_events,
)

from puras_media.catalog import Catalogue, Route, catalogue
from puras_media.errors import MediaError
from puras_media.measure import Mp4Duration
from puras_media.outputs import (
    OutputFile,
    content_type_for,
    extension_for,
    find_outputs,
    meta_of,
    parse_path,
)
from puras_media.providers import ElevenLabs, FalQueue, Generation
from puras_media.providers.elevenlabs import audio_format
from puras_media.settings import MediaSettings
from puras_media.stores import MediaStore

log = get_logger("puras_media")

Emit = Callable[[list[Event]], Awaitable[None]]
"""Publishes a call's usage events, in order, before the call's answer is given."""

KINDS = ("image", "video", "audio", "auto")
MAX_OUTPUT_PATH_CHARS = 1024
MAX_INLINE_OUTPUT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class MediaRequest:
    """``media.run(model, inputs, output_path=…, output_url_path=…, kind=…)``."""

    model: str
    inputs: dict[str, Any] = field(default_factory=dict)
    output_path: str | None = None
    output_url_path: str | None = None
    kind: str = "auto"


@dataclass(frozen=True)
class CallContext:
    """Whose call it is: billed to the workspace, recorded on the job."""

    workspace_id: UUID
    job_id: UUID | None = None
    key_id: UUID | None = None
    attempt: int | None = None
    daily_cap_micros: int | None = None
    """The key's cap the job was submitted under: the call's quote is held against it."""
    hold_id: UUID | None = None
    """The budget hold of this call (set by :meth:`MediaService.run`)."""


@dataclass
class _Saved:
    drive_path: str
    source: OutputFile
    measured_seconds: Fraction | None = None


class MediaService:
    """The media library: one per process."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        fal: FalQueue,
        elevenlabs: ElevenLabs,
        routes: Catalogue | None = None,
        prices: Pricebook | None = None,
        policy: Policy | None = None,
        producer: str,
        max_output_bytes: int = 512 * 1024 * 1024,
    ) -> None:
        self.http = http
        self.fal = fal
        self.elevenlabs = elevenlabs
        self.routes = routes or catalogue()
        self.prices = prices or pricebook()
        self.policy = policy or Policy.from_env(trusted_origins=[fal.origin])
        self.producer = producer
        self.max_output_bytes = max_output_bytes
        self.budgets: BudgetClient | None = None
        """Holds each call's quote before it is made (set by the process that has a bus)."""
        self.hold_ttl_seconds = int(fal.timeout_seconds) + 300

    @classmethod
    def from_settings(
        cls,
        settings: MediaSettings,
        http: httpx.AsyncClient,
        *,
        producer: str,
        margin_pct: Any = None,
    ) -> MediaService:
        fal = FalQueue(
            http=http,
            queue_url=settings.fal_queue_url,
            api_key=settings.fal_api_key.get_secret_value(),
            timeout_seconds=settings.media_timeout_seconds,
            poll_seconds=settings.media_poll_seconds,
            poll_max_seconds=settings.media_poll_max_seconds,
        )
        eleven = ElevenLabs(
            http=http,
            base_url=settings.elevenlabs_base_url,
            api_key=settings.elevenlabs_api_key.get_secret_value(),
        )
        return cls(
            http=http,
            fal=fal,
            elevenlabs=eleven,
            routes=catalogue(settings.media_endpoints),
            prices=pricebook(margin_pct if margin_pct is not None else settings.margin_pct),
            # The provider's own file host is trusted; anything else a response points at must be public.
            policy=Policy.parse(
                settings.ssrf_allow, trusted_origins=[fal.origin, settings.elevenlabs_base_url]
            ),
            producer=producer,
            max_output_bytes=settings.media_max_output_bytes,
        )

    # -- the call ------------------------------------------------------------------------------

    def route(self, slug: Any) -> Route:
        """The slug's route, or ``unknown_model`` naming close matches."""
        route = self.routes.get(slug) if isinstance(slug, str) else None
        if route is None:
            try:
                self.prices.quote(str(slug), {})
            except UnknownModel as exc:
                raise MediaError(
                    "unknown_model", str(exc), model=str(slug), pointer="/model"
                ) from None
            except PricingError:
                pass
            raise MediaError(
                "unknown_model",
                f"model {slug!r} cannot be called through media.run",
                model=str(slug),
                pointer="/model",
            )
        return route

    def check(self, request: MediaRequest) -> Route:
        """Everything that can be refused before the provider is called."""
        route = self.route(request.model)
        if not isinstance(request.inputs, dict):
            raise MediaError(
                "invalid_request", "inputs must be an object", model=route.slug, pointer="/inputs"
            )
        try:
            self.prices.quote(route.slug, request.inputs)
        except MeasureRequired:
            pass  # billed from what the call produces
        except PricingError as exc:
            raise MediaError(
                "invalid_request", str(exc), model=route.slug, pointer=exc.pointer
            ) from None
        if request.kind not in KINDS:
            raise MediaError(
                "invalid_request",
                f"kind must be one of {', '.join(KINDS)}, not {request.kind!r}",
                model=route.slug,
                pointer="/kind",
            )
        if request.output_path is not None:
            _check_output_path(request.output_path, route.slug)
        if request.output_url_path is not None:
            parse_path(request.output_url_path)
        return route

    async def run(
        self,
        request: MediaRequest,
        *,
        context: CallContext,
        store: MediaStore,
        emit: Emit,
        cancelled: asyncio.Event | None = None,
    ) -> dict[str, Any]:
        """Make the call; raises :class:`MediaError` (never billed) or returns the result."""
        route = self.check(request)
        context = await self._hold(route, request.inputs, context)
        try:
            return await self._run(route, request, context, store, emit, cancelled)
        except BaseException:
            if context.hold_id is not None and self.budgets is not None:
                await asyncio.shield(self.budgets.release(context.hold_id))
            raise

    def most(self, route: Route, inputs: dict[str, Any]) -> int:
        """The most the call can be billed: its quote, or for a length measured only from the
        output, the model's longest (what :meth:`_bill` falls back to)."""
        try:
            return self.prices.quote(route.slug, inputs).billed_micros
        except MeasureRequired:
            fallback = max(route.duration.allowed) if route.duration else 1
            return self.prices.quote(route.slug, inputs, measured_units=fallback).billed_micros

    async def _hold(
        self, route: Route, inputs: dict[str, Any], context: CallContext
    ) -> CallContext:
        if self.budgets is None:
            return context
        most = self.most(route, inputs)
        try:
            hold_id, _ = await self.budgets.hold(
                workspace_id=context.workspace_id,
                job_id=context.job_id,
                key_id=context.key_id,
                daily_cap_micros=context.daily_cap_micros,
                min_micros=most,
                max_micros=most,
                ttl_seconds=self.hold_ttl_seconds,
                what=f"a call of {route.slug}",
            )
        except HoldRefused as refused:
            raise MediaError(refused.code, str(refused), model=route.slug) from None
        except TimeoutError as exc:
            raise MediaError("upstream_failed", f"the call could not be budgeted: {exc}") from None
        return replace(context, hold_id=hold_id)

    async def _run(
        self,
        route: Route,
        request: MediaRequest,
        context: CallContext,
        store: MediaStore,
        emit: Emit,
        cancelled: asyncio.Event | None,
    ) -> dict[str, Any]:
        kind = route.kind if request.kind == "auto" else request.kind
        generation = await self._generate(route, request.inputs, cancelled)
        if route.mode == "stt":
            return await self._transcript(route, request, generation, context, emit)
        call_id = uuid.uuid4().hex
        if generation.audio is not None:
            saved = [await self._save_audio(generation, request, call_id, store)]
            meta: dict[str, Any] = {}
        else:
            files, key = self._locate(route, request, generation, kind)
            saved = [
                await self._save(
                    f, target=(request.output_path, i, call_id), kind=kind, route=route, store=store
                )
                for i, f in enumerate(files)
            ]
            meta = meta_of(generation.body, key)
        if generation.metrics:
            meta["metrics"] = generation.metrics
        measured = self._measured(route, request.inputs, saved, generation.body)
        billed = await self._bill(
            route, request.inputs, measured, generation.request_id, context, emit
        )
        links = await store.sign([s.drive_path for s in saved])
        result: dict[str, Any] = {
            "model": route.slug,
            "kind": "audio" if generation.audio is not None else kind,
            "drive_path": saved[0].drive_path,
            "output_url": links.get(saved[0].drive_path),
            "request_id": generation.request_id,
            "billed_micros": billed,
            "billed_usd": format_usd(billed),
            "meta": meta,
        }
        if len(saved) > 1:
            result["files"] = [
                {"drive_path": s.drive_path, "output_url": links.get(s.drive_path)} for s in saved
            ]
        return result

    async def _generate(
        self, route: Route, inputs: dict[str, Any], cancelled: asyncio.Event | None
    ) -> Generation:
        if route.provider == "fal":
            assert route.endpoint is not None
            return await self.fal.generate(
                route.endpoint, inputs, model=route.slug, cancelled=cancelled
            )
        assert route.model_id is not None
        if route.mode == "tts":
            return await self.elevenlabs.speak(route.model_id, inputs, model=route.slug)
        return await self.elevenlabs.transcribe(route.model_id, inputs, model=route.slug)

    def _locate(
        self, route: Route, request: MediaRequest, generation: Generation, kind: str
    ) -> tuple[list[OutputFile], str | None]:
        try:
            return find_outputs(generation.body, kind=kind, path=request.output_url_path)
        except MediaError as exc:
            raise MediaError(
                exc.code,
                f"{route.slug}: {exc.message}",
                model=route.slug,
                request_id=generation.request_id,
            ) from None

    # -- saving --------------------------------------------------------------------------------

    async def _save_audio(
        self, generation: Generation, request: MediaRequest, call_id: str, store: MediaStore
    ) -> _Saved:
        fmt = request.inputs.get("output_format")
        ext = (
            audio_format(fmt)[1]
            if isinstance(fmt, str)
            else extension_for(OutputFile("inline", generation.audio_type), kind="audio")
        )
        path = target_path(request.output_path, 0, ext, call_id)
        drive_path = await store.save(
            path,
            _once(generation.audio or b""),
            content_type=generation.audio_type or content_type_for(ext),
        )
        return _Saved(drive_path, OutputFile("inline", generation.audio_type))

    async def _save(
        self,
        output: OutputFile,
        *,
        target: tuple[str | None, int, str],
        kind: str,
        route: Route,
        store: MediaStore,
    ) -> _Saved:
        output_path, index, call_id = target
        measure = Mp4Duration() if route.kind == "video" else None
        try:
            if output.url.startswith("data:"):
                data, media_type = _decode_data_url(output.url, route.slug)
                ext = extension_for(
                    OutputFile(output.url, output.content_type or media_type), kind=kind
                )
                if measure:
                    measure.feed(data)
                drive_path = await store.save(
                    target_path(output_path, index, ext, call_id),
                    _once(data),
                    content_type=media_type,
                )
                return _Saved(drive_path, output, measure.seconds if measure else None)
            async with open_url(
                self.http,
                output.url,
                policy=self.policy,
                max_bytes=self.max_output_bytes,
                timeout=600.0,
            ) as response:
                ext = extension_for(output, kind=kind, served_type=response.content_type)
                media_type = (
                    output.content_type or response.content_type or content_type_for(ext)
                ).split(";")[0]
                path = target_path(output_path, index, ext, call_id)
                drive_path = await store.save(
                    path, _tee(response.aiter_bytes(), measure), content_type=media_type
                )
        except BlockedURL:
            raise MediaError(
                "download_failed",
                f"{route.slug}: the output URL leads to a private or internal address; the platform does not fetch from those",
                model=route.slug,
            ) from None
        except FetchError as exc:
            # Never the URL itself: an error must not hand out an output that was not billed.
            reason = str(exc).split(": ")[-1] if ": " in str(exc) else type(exc).__name__
            raise MediaError(
                "download_failed",
                f"{route.slug}: the output file could not be downloaded ({reason})",
                model=route.slug,
            ) from None
        return _Saved(drive_path, output, measure.seconds if measure else None)

    # -- billing -------------------------------------------------------------------------------

    def _measured(
        self, route: Route, inputs: dict[str, Any], saved: list[_Saved], body: Any
    ) -> Fraction | None:
        """What the call produced, in the unit it is billed by."""
        unit = self.prices.media.models[route.slug].unit
        if unit == "image":
            return Fraction(len(saved))
        if unit == "megapixel":
            areas = [
                s.source.width * s.source.height
                for s in saved
                if s.source.width and s.source.height
            ]
            if len(areas) == len(saved):
                return sum((Fraction(area, 1_000_000) for area in areas), Fraction(0))
            return None
        if unit == "character":
            text = inputs.get("text")
            return Fraction(len(text)) if isinstance(text, str) else None
        if unit == "second":
            first = saved[0] if saved else None
            stated = (first.source.duration if first else None) or (
                body.get("duration") if isinstance(body, dict) else None
            )
            if stated is not None and (seconds := _seconds(stated)) is not None:
                return seconds
            return first.measured_seconds if first else None
        return None

    async def _bill(
        self,
        route: Route,
        inputs: dict[str, Any],
        measured: Fraction | None,
        request_id: str | None,
        context: CallContext,
        emit: Emit,
    ) -> int:
        model = self.prices.media.models[route.slug]
        usage = UsageRecordedPayload(
            job_id=context.job_id,
            key_id=context.key_id,
            attempt=context.attempt,
            kind="media",
            provider=route.provider,
            model=route.slug,
            units=decimal_text(measured) if measured else "0",
            unit=model.unit,
            inputs=inputs,
            request_id=request_id,
            hold_id=context.hold_id,
        )
        try:
            events, quote = usage_events(
                self.prices, usage, workspace_id=context.workspace_id, producer=self.producer
            )
        except MeasureRequired:
            # The length could not be read from the response or the file: bill the longest the
            # model makes rather than nothing (docs/media.md).
            fallback = max(route.duration.allowed) if route.duration else 1
            log.warning(
                "billing the model's longest output: the length was not measurable",
                model=route.slug,
                seconds=fallback,
            )
            usage = usage.model_copy(update={"units": str(fallback)})
            events, quote = usage_events(
                self.prices, usage, workspace_id=context.workspace_id, producer=self.producer
            )
        await emit(events)
        return quote.billed_micros

    async def _transcript(
        self,
        route: Route,
        request: MediaRequest,
        generation: Generation,
        context: CallContext,
        emit: Emit,
    ) -> dict[str, Any]:
        body = generation.body if isinstance(generation.body, dict) else {}
        raw_words = body.get("words")
        words = raw_words if isinstance(raw_words, list) else []
        seconds = (
            _seconds(body.get("audio_duration_secs"))
            if body.get("audio_duration_secs") is not None
            else None
        )
        if seconds is None:
            ends = [
                _seconds(w.get("end"))
                for w in words
                if isinstance(w, dict) and w.get("end") is not None
            ]
            seconds = max((e for e in ends if e is not None), default=None)
        billed = await self._bill(
            route, request.inputs, seconds, generation.request_id, context, emit
        )
        known = ("text", "words", "language_code", "language_probability")
        return {
            "model": route.slug,
            "kind": "transcript",
            "drive_path": "",
            "output_url": None,
            "request_id": generation.request_id,
            "billed_micros": billed,
            "billed_usd": format_usd(billed),
            "text": body.get("text", ""),
            "words": words,
            "language_code": body.get("language_code"),
            "language_probability": body.get("language_probability"),
            "audio_seconds": decimal_text(seconds) if seconds else None,
            "meta": {k: v for k, v in body.items() if k not in known},
        }


def target_path(output_path: str | None, index: int, ext: str, call_id: str) -> str:
    """Where output ``index`` of call ``call_id`` is saved: ``output_path`` (its ``-2``, ``-3`` …
    siblings for further files; the extension added when it has none; a folder when it ends in
    ``/``), or ``media/<call_id><ext>``."""
    suffix = f"-{index + 1}" if index else ""
    if output_path is None or output_path.endswith("/"):
        folder = (output_path or "media/").rstrip("/")
        return f"{folder}/{call_id}{suffix}{ext}"
    name = output_path.rsplit("/", 1)[-1]
    if "." in name.strip("."):
        stem, _, own_ext = output_path.rpartition(".")
        return f"{stem}{suffix}.{own_ext}"
    return f"{output_path}{suffix}{ext}"


def _check_output_path(path: Any, slug: str) -> None:
    if not isinstance(path, str) or not path.strip():
        raise MediaError(
            "invalid_request",
            "output_path must be a non-empty drive path such as 'renders/spin.mp4'",
            model=slug,
            pointer="/output_path",
        )
    if len(path) > MAX_OUTPUT_PATH_CHARS:
        raise MediaError(
            "invalid_request",
            f"output_path is {len(path)} characters; the limit is {MAX_OUTPUT_PATH_CHARS}",
            model=slug,
            pointer="/output_path",
        )
    try:
        relative(path.rstrip("/") or ".")
    except ValueError as exc:
        raise MediaError(
            "invalid_request", f"output_path: {exc}", model=slug, pointer="/output_path"
        ) from None
    if any(ord(c) < 32 or c == "%" for c in path):
        raise MediaError(
            "invalid_request",
            "output_path may not contain control characters or '%'",
            model=slug,
            pointer="/output_path",
        )


def _seconds(value: Any) -> Fraction | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        seconds = client_fraction(value, pointer="", floats=True)
    except NumberError:
        return None
    return seconds if seconds > 0 else None


def _decode_data_url(url: str, slug: str) -> tuple[bytes, str]:
    head, _, payload = url.partition(",")
    media_type = head[len("data:") :].split(";")[0] or "application/octet-stream"
    if len(payload) > MAX_INLINE_OUTPUT_BYTES * 4 // 3 + 4:
        raise MediaError(
            "download_failed",
            f"{slug}: an inline output is over {MAX_INLINE_OUTPUT_BYTES} bytes",
            model=slug,
        )
    try:
        return (
            base64.b64decode(payload) if head.endswith(";base64") else payload.encode()
        ), media_type
    except (binascii.Error, ValueError):
        raise MediaError(
            "download_failed", f"{slug}: an inline output is not valid base64", model=slug
        ) from None


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _tee(chunks: AsyncIterator[bytes], measure: Mp4Duration | None) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        if measure is not None:
            measure.feed(chunk)
        yield chunk
