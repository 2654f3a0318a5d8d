"""A local server speaking fal's queue API, scripted per test.

``POST /<endpoint>`` queues a request and answers ``{request_id, status_url, response_url,
cancel_url}``; ``GET …/status`` answers ``IN_QUEUE`` (for the turn's ``polls``), ``IN_PROGRESS``
(while a :class:`Hold` is not released), then ``COMPLETED`` with metrics; ``GET
…/requests/<id>`` answers the output, with file URLs the stub itself serves (``/files/…``);
``PUT …/cancel`` withdraws. A test scripts what the "model" does::

    fal.script(Video(seconds=5), match=marker)      # the next request whose inputs hold marker

Each request takes the next turn of the first script whose ``match`` appears in its endpoint or
inputs; with no script it gets a video (endpoints naming video) or images. Every request is
recorded in :attr:`FalStub.requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from puras_testing.media.files import file_for
from puras_testing.stubs import serve_app

API_KEY = "fal-test-key"


@dataclass(frozen=True)
class Images:
    """``{"images": [{url, content_type, width, height}…], "seed"}``; ``count`` defaults to
    the request's ``num_images`` (or 1)."""

    count: int | None = None
    ext: str = "png"
    width: int = 1024
    height: int = 1024
    polls: int = 0


@dataclass(frozen=True)
class Video:
    """``{"video": {url, content_type, file_name, file_size}, "seed"}``: an MP4 whose header
    says ``seconds``; ``stated`` also puts ``duration`` in the response."""

    seconds: Fraction | int | str = 5
    ext: str = "mp4"
    stated: bool = False
    polls: int = 0


@dataclass(frozen=True)
class Body:
    """Any response: ``{base}`` in its strings becomes the stub's URL; ``files`` are served."""

    body: Any
    files: dict[str, bytes] = field(default_factory=dict)
    polls: int = 0


@dataclass(frozen=True)
class Rejected:
    """The submit is refused (422 with fal's validation ``detail``, or any status)."""

    detail: Any
    status: int = 422


@dataclass(frozen=True)
class Failed:
    """The request runs, then its result is an error (fal answers the result URL with it)."""

    detail: Any = "the model failed"
    status: int = 500
    polls: int = 0


@dataclass(frozen=True)
class Hold:
    """Stay ``IN_PROGRESS`` until ``released`` is set, then answer ``then``."""

    released: asyncio.Event
    then: Images | Video | Body | Failed


Turn = Images | Video | Body | Rejected | Failed | Hold
Queued = Images | Video | Body | Failed | Hold
"""A turn that runs: a rejected one is answered at submit and never queued."""


@dataclass
class FalRequest:
    endpoint: str
    inputs: Any
    authorization: str | None
    request_id: str | None = None
    polls: int = 0
    cancelled: bool = False


@dataclass
class _Script:
    turns: list[Turn]
    match: str | None


class FalStub:
    def __init__(self) -> None:
        self.base_url = ""
        self.requests: list[FalRequest] = []
        self._scripts: list[_Script] = []
        self._queued: dict[str, tuple[FalRequest, Queued, int]] = {}
        self._files: dict[str, tuple[bytes, str]] = {}
        self._ids = itertools.count(1)

    def env(self, service: str | None = None) -> dict[str, str]:
        """What a process needs to use this stub as fal (``PURAS_<SERVICE>_…`` with ``service``)."""
        prefix = f"PURAS_{service.upper().replace('-', '_')}_" if service else "PURAS_"
        return {f"{prefix}FAL_QUEUE_URL": self.base_url, f"{prefix}FAL_API_KEY": API_KEY}

    def script(self, *turns: Turn, match: str | None = None) -> None:
        self._scripts.append(_Script(list(turns), match))

    def of(self, marker: str) -> list[FalRequest]:
        """The recorded requests whose endpoint or inputs hold ``marker``."""
        return [r for r in self.requests if marker in r.endpoint or marker in json.dumps(r.inputs)]

    def _turn(self, endpoint: str, inputs: Any) -> Turn:
        text = endpoint + json.dumps(inputs)
        for script in self._scripts:
            if script.turns and script.match is not None and script.match in text:
                return script.turns.pop(0)
        for script in self._scripts:
            if script.turns and script.match is None:
                return script.turns.pop(0)
        return Video() if ("video" in endpoint or "veo" in endpoint) else Images()

    # -- the wire ------------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/files/{name}", self._file, methods=["GET"]),
                Route(
                    "/{endpoint:path}/requests/{request_id}/status", self._status, methods=["GET"]
                ),
                Route(
                    "/{endpoint:path}/requests/{request_id}/cancel", self._cancel, methods=["PUT"]
                ),
                Route("/{endpoint:path}/requests/{request_id}", self._result, methods=["GET"]),
                Route("/{endpoint:path}", self._submit, methods=["POST"]),
            ]
        )

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Key {API_KEY}"

    async def _submit(self, request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        try:
            inputs = await request.json()
        except ValueError:
            return JSONResponse({"detail": "body is not JSON"}, status_code=400)
        record = FalRequest(endpoint, inputs, request.headers.get("authorization"))
        self.requests.append(record)
        if not self._authorized(request):
            return JSONResponse({"detail": "Invalid API key"}, status_code=401)
        turn = self._turn(endpoint, inputs)
        if isinstance(turn, Rejected):
            return JSONResponse({"detail": turn.detail}, status_code=turn.status)
        request_id = f"req-{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        record.request_id = request_id
        polls = getattr(turn.then if isinstance(turn, Hold) else turn, "polls", 0)
        self._queued[request_id] = (record, turn, polls)
        base = f"{self.base_url}/{endpoint}/requests/{request_id}"
        return JSONResponse(
            {
                "request_id": request_id,
                "status_url": base + "/status",
                "response_url": base,
                "cancel_url": base + "/cancel",
                "queue_position": polls,
            }
        )

    async def _status(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"detail": "Invalid API key"}, status_code=401)
        entry = self._queued.get(request.path_params["request_id"])
        if entry is None:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        record, turn, left = entry
        record.polls += 1
        if isinstance(turn, Hold) and not turn.released.is_set():
            return JSONResponse({"status": "IN_PROGRESS", "logs": []})
        if left > 0:
            self._queued[request.path_params["request_id"]] = (record, turn, left - 1)
            return JSONResponse({"status": "IN_QUEUE", "queue_position": left - 1})
        return JSONResponse(
            {"status": "COMPLETED", "metrics": {"inference_time": 1.25}, "logs": []}
        )

    async def _cancel(self, request: Request) -> Response:
        entry = self._queued.get(request.path_params["request_id"])
        if entry is not None:
            entry[0].cancelled = True
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)

    async def _result(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"detail": "Invalid API key"}, status_code=401)
        entry = self._queued.get(request.path_params["request_id"])
        if entry is None:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        record, turn, _ = entry
        if isinstance(turn, Hold):
            turn = turn.then
        if isinstance(turn, Failed):
            return JSONResponse({"detail": turn.detail}, status_code=turn.status)
        return JSONResponse(self._output(record, turn))

    def _serve(self, name: str, data: bytes, content_type: str) -> str:
        self._files[name] = (data, content_type)
        return f"{self.base_url}/files/{name}"

    def _output(self, record: FalRequest, turn: Images | Video | Body) -> Any:
        rid = record.request_id
        if isinstance(turn, Images):
            count = (
                turn.count
                or (record.inputs.get("num_images") if isinstance(record.inputs, dict) else None)
                or 1
            )
            images = []
            for i in range(int(count)):
                data, content_type = file_for(turn.ext)
                url = self._serve(f"{rid}-{i}.{turn.ext}", data, content_type)
                images.append(
                    {
                        "url": url,
                        "content_type": content_type,
                        "width": turn.width,
                        "height": turn.height,
                        "file_name": f"{i}.{turn.ext}",
                    }
                )
            return {"images": images, "seed": 42, "has_nsfw_concepts": [False] * int(count)}
        if isinstance(turn, Video):
            data, content_type = file_for(turn.ext, seconds=turn.seconds)
            video: dict[str, Any] = {
                "url": self._serve(f"{rid}.{turn.ext}", data, content_type),
                "content_type": content_type,
                "file_name": f"output.{turn.ext}",
                "file_size": len(data),
            }
            if turn.stated:
                video["duration"] = float(Fraction(str(turn.seconds)))
            return {"video": video, "seed": 7}
        for name, data in turn.files.items():
            self._files[name] = (data, file_for(name.rsplit(".", 1)[-1])[1])
        return json.loads(json.dumps(turn.body).replace("{base}", self.base_url))

    async def _file(self, request: Request) -> Response:
        entry = self._files.get(request.path_params["name"])
        if entry is None:
            return Response(b"not found", status_code=404)
        data, content_type = entry
        return Response(data, media_type=content_type)


@contextlib.asynccontextmanager
async def fal_stub() -> AsyncIterator[FalStub]:
    stub = FalStub()
    async with serve_app(stub.app()) as url:
        stub.base_url = url
        yield stub
