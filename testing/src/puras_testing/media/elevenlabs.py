"""A local server speaking ElevenLabs' speech API, scripted per test: ``POST
/v1/text-to-speech/{voice_id}`` answers audio (``request-id`` header), ``POST
/v1/speech-to-text`` (multipart) answers a transcript with per-word timings.

    eleven.script(Transcript("hello world", seconds=3), match=marker)

A request takes the next turn of the first script whose ``match`` appears in it; unscripted
speech answers an MP3, unscripted transcription a short English transcript.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from puras_testing.media.files import MP3
from puras_testing.stubs import serve_app

API_KEY = "eleven-test-key"


@dataclass(frozen=True)
class Speech:
    audio: bytes = MP3
    content_type: str = "audio/mpeg"


@dataclass(frozen=True)
class Transcript:
    text: str = "hello from the stub"
    seconds: float | None = None
    """``audio_duration_secs`` in the answer; without it only the words' timings say the length."""
    language_code: str = "en"


@dataclass(frozen=True)
class Fail:
    status: int
    message: str = "scripted failure"


Turn = Speech | Transcript | Fail


@dataclass
class ElevenRequest:
    path: str
    body: Any
    """JSON for speech; the form fields (lists of values) for transcription."""
    api_key: str | None
    files: dict[str, bytes] = field(default_factory=dict)


class ElevenLabsStub:
    def __init__(self) -> None:
        self.base_url = ""
        self.requests: list[ElevenRequest] = []
        self._scripts: list[tuple[list[Turn], str | None]] = []

    def env(self, service: str | None = None) -> dict[str, str]:
        prefix = f"PURAS_{service.upper().replace('-', '_')}_" if service else "PURAS_"
        return {
            f"{prefix}ELEVENLABS_BASE_URL": self.base_url,
            f"{prefix}ELEVENLABS_API_KEY": API_KEY,
        }

    def script(self, *turns: Turn, match: str | None = None) -> None:
        self._scripts.append((list(turns), match))

    def of(self, marker: str) -> list[ElevenRequest]:
        return [r for r in self.requests if marker in json.dumps(r.body) or marker in r.path]

    def _turn(self, text: str, default: Turn) -> Turn:
        for turns, match in self._scripts:
            if turns and match is not None and match in text:
                return turns.pop(0)
        for turns, match in self._scripts:
            if turns and match is None:
                return turns.pop(0)
        return default

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/text-to-speech/{voice_id}", self._speak, methods=["POST"]),
                Route("/v1/speech-to-text", self._transcribe, methods=["POST"]),
            ]
        )

    def _refused(self, request: Request) -> Response | None:
        if request.headers.get("xi-api-key") != API_KEY:
            return JSONResponse(
                {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}},
                status_code=401,
            )
        return None

    async def _speak(self, request: Request) -> Response:
        body = await request.json()
        record = ElevenRequest(
            f"/v1/text-to-speech/{request.path_params['voice_id']}",
            body,
            request.headers.get("xi-api-key"),
        )
        record.body = {**body, "output_format": request.query_params.get("output_format")}
        self.requests.append(record)
        if (refused := self._refused(request)) is not None:
            return refused
        turn = self._turn(json.dumps(body), Speech())
        if isinstance(turn, Fail):
            return JSONResponse(
                {"detail": {"status": "error", "message": turn.message}}, status_code=turn.status
            )
        assert isinstance(turn, Speech)
        return Response(
            turn.audio,
            media_type=turn.content_type,
            headers={"request-id": f"tts-{len(self.requests)}"},
        )

    async def _transcribe(self, request: Request) -> Response:
        form = await request.form()
        fields: dict[str, list[str]] = {}
        files: dict[str, bytes] = {}
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                files[key] = await value.read()
            else:
                fields.setdefault(key, []).append(str(value))
        record = ElevenRequest(
            "/v1/speech-to-text", fields, request.headers.get("xi-api-key"), files
        )
        self.requests.append(record)
        if (refused := self._refused(request)) is not None:
            return refused
        if "file" not in files and "cloud_storage_url" not in fields:
            return JSONResponse(
                {
                    "detail": {
                        "status": "invalid_request",
                        "message": "Either file or cloud_storage_url must be provided",
                    }
                },
                status_code=422,
            )
        turn = self._turn(json.dumps(fields), Transcript())
        if isinstance(turn, Fail):
            return JSONResponse(
                {"detail": {"status": "error", "message": turn.message}}, status_code=turn.status
            )
        assert isinstance(turn, Transcript)
        words = []
        for i, word in enumerate(turn.text.split()):
            words.append(
                {
                    "text": word,
                    "start": round(i * 0.5, 3),
                    "end": round(i * 0.5 + 0.4, 3),
                    "type": "word",
                }
            )
        answer: dict[str, Any] = {
            "language_code": turn.language_code,
            "language_probability": 0.98,
            "text": turn.text,
            "words": words,
            "transcription_id": f"stt-{len(self.requests)}",
        }
        if turn.seconds is not None:
            answer["audio_duration_secs"] = turn.seconds
        return JSONResponse(answer, headers={"request-id": f"stt-{len(self.requests)}"})


@contextlib.asynccontextmanager
async def elevenlabs_stub() -> AsyncIterator[ElevenLabsStub]:
    stub = ElevenLabsStub()
    async with serve_app(stub.app()) as url:
        stub.base_url = url
        yield stub
