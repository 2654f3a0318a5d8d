"""ElevenLabs: text to speech (``POST /v1/text-to-speech/{voice_id}``, answered with the audio
itself) and speech to text (``POST /v1/speech-to-text``, multipart, answered with the
transcript and per-word timings). Every request carries ``xi-api-key``.

Speech takes the slug's ``model_id``; a ``voice`` name from :data:`VOICES` (or any voice id)
picks the voice. A transcription reads its audio from a URL (``cloud_storage_url``: ElevenLabs
fetches it) or from a ``data:`` URI (sent as the file).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from typing import Any, Final

import httpx

from puras_media.errors import MediaError
from puras_media.providers.base import Generation, failure, with_retries

VOICES: Final = {
    "aria": "9BWtsMINqrJLrRacOk9x",
    "roger": "CwhRBWXzGAHq8TQ4Fs17",
    "sarah": "EXAVITQu4vr4xnSDxMaL",
    "laura": "FGY2WhTYpPnrIDTdsKH5",
    "charlie": "IKne3meq5aSn9XLyUdCD",
    "george": "JBFqnCBsd6RMkjVDRZzb",
    "callum": "N2lVS1w4EtoT3dr4eOWO",
    "river": "SAz9YHcvj6GT2YYXdXww",
    "liam": "TX3LPaxmHKxFdv7VOQHJ",
    "charlotte": "XB0fDUnXU5powFXDhCwa",
    "alice": "Xb7hH8MSUJpSbSDYk0k2",
    "matilda": "XrExE9yKIg1WjnnlVkGX",
    "will": "bIHbv24MWmeRgasZH58o",
    "jessica": "cgSgspJ2msm6clMCkdW9",
    "eric": "cjVigY5qzO86Huf0OWal",
    "chris": "iP95p4xoKVk53GoZ742B",
    "brian": "nPczCjzI2devNBz1zQrb",
    "daniel": "onwK4e9ZLuTAKqWW03F9",
    "lily": "pFZP5JQG7iQjIQuC4Bku",
    "bill": "pqHfZKP75CvOlQylNhV4",
    "rachel": "21m00Tcm4TlvDq8ikWAM",
}
"""ElevenLabs' premade voices by name (case-insensitive); any other value is used as a voice id."""
DEFAULT_VOICE: Final = "aria"
DEFAULT_FORMAT: Final = "mp3_44100_128"
MAX_TEXT_CHARS: Final = 5000
"""Characters of one speech request (ElevenLabs' own limit for its v3 and v2 models)."""
MAX_INLINE_AUDIO_BYTES: Final = 25 * 1024 * 1024

_VOICE_ID: Final = re.compile(r"^[A-Za-z0-9]{8,64}$")
_FIELD_NAME: Final = re.compile(r"^[A-Za-z0-9_\[\]]{1,64}$")
_SPEECH_FIELDS: Final = frozenset({"voice", "voice_id", "output_format", "text", "model_id"})
_AUDIO_FIELDS: Final = ("audio", "audio_url", "cloud_storage_url")
_FORMATS: Final = {
    "mp3": ("audio/mpeg", ".mp3"),
    "opus": ("audio/opus", ".opus"),
    "pcm": ("audio/L16", ".pcm"),
    "ulaw": ("audio/basic", ".ulaw"),
    "alaw": ("audio/basic", ".alaw"),
    "wav": ("audio/wav", ".wav"),
}


def audio_format(output_format: str) -> tuple[str, str]:
    """``mp3_44100_128`` → ``("audio/mpeg", ".mp3")``."""
    return _FORMATS.get(output_format.split("_", 1)[0], ("application/octet-stream", ".bin"))


def voice_id(value: Any) -> str:
    if value is None:
        return VOICES[DEFAULT_VOICE]
    if not isinstance(value, str) or not value.strip():
        raise MediaError(
            "invalid_request",
            "voice must be a voice name such as 'Aria' or an ElevenLabs voice id",
            pointer="/inputs/voice",
        )
    named = VOICES.get(value.strip().lower())
    if named:
        return named
    if not _VOICE_ID.match(value.strip()):
        raise MediaError(
            "invalid_request",
            f"voice {value!r} is neither a known voice ({', '.join(n.title() for n in VOICES)}) nor a voice id",
            pointer="/inputs/voice",
        )
    return value.strip()


class ElevenLabs:
    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        base_url: str,
        api_key: str,
        timeout_seconds: float = 600.0,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = httpx.Timeout(timeout_seconds, connect=10.0)

    def _headers(self) -> dict[str, str]:
        return {"xi-api-key": self.api_key}

    async def speak(self, model_id: str, inputs: dict[str, Any], *, model: str) -> Generation:
        """Text to speech: the audio, inline."""
        text = inputs.get("text")
        if not isinstance(text, str) or not text:
            raise MediaError(
                "invalid_request",
                f"{model} needs inputs.text, the words to speak",
                model=model,
                pointer="/inputs/text",
            )
        if len(text) > MAX_TEXT_CHARS:
            raise MediaError(
                "invalid_request",
                f"inputs.text has {len(text)} characters; {model} takes at most {MAX_TEXT_CHARS} per call",
                model=model,
                pointer="/inputs/text",
            )
        voice = voice_id(inputs.get("voice_id", inputs.get("voice")))
        output_format = inputs.get("output_format") or DEFAULT_FORMAT
        body = {
            "text": text,
            "model_id": model_id,
            **{k: v for k, v in inputs.items() if k not in _SPEECH_FIELDS},
        }
        url = f"{self.base_url}/v1/text-to-speech/{voice}"
        try:
            response = await with_retries(
                lambda: self.http.post(
                    url,
                    params={"output_format": output_format},
                    json=body,
                    headers=self._headers(),
                    timeout=self.timeout,
                ),
                idempotent=False,
            )
        except httpx.HTTPError as exc:
            raise MediaError(
                "upstream_failed",
                f"{model}: ElevenLabs could not be reached: {type(exc).__name__}",
                model=model,
            ) from None
        request_id = response.headers.get("request-id")
        if response.status_code >= 300:
            raise failure(response, provider="elevenlabs", model=model, request_id=request_id)
        media_type = (
            response.headers.get("content-type", "").split(";")[0].strip()
            or audio_format(output_format)[0]
        )
        return Generation(request_id=request_id, audio=response.content, audio_type=media_type)

    async def transcribe(self, model_id: str, inputs: dict[str, Any], *, model: str) -> Generation:
        """Speech to text: the transcript with per-word timings."""
        given = [k for k in _AUDIO_FIELDS if inputs.get(k)]
        if len(given) != 1:
            raise MediaError(
                "invalid_request",
                f"{model} needs exactly one of inputs.audio / audio_url / cloud_storage_url (an https URL or a data: URI)",
                model=model,
                pointer="/inputs/audio",
            )
        source = inputs[given[0]]
        fields: list[tuple[str, str]] = [("model_id", model_id)]
        upload: tuple[bytes, str] | None = None
        if isinstance(source, str) and source.startswith("data:"):
            upload = _data_uri(source, model=model, pointer=f"/inputs/{given[0]}")
        elif isinstance(source, str) and source.startswith(("https://", "http://")):
            fields.append(("cloud_storage_url", source))
        else:
            raise MediaError(
                "invalid_request",
                f"inputs.{given[0]} must be an http(s) URL or a data: URI",
                model=model,
                pointer=f"/inputs/{given[0]}",
            )
        for key, value in inputs.items():
            if key in _AUDIO_FIELDS or key == "model_id" or value is None:
                continue
            if not _FIELD_NAME.match(key):
                raise MediaError(
                    "invalid_request",
                    f"inputs field {key!r} is not a form field name ElevenLabs takes",
                    model=model,
                    pointer=f"/inputs/{key}",
                )
            for item in value if isinstance(value, list) else [value]:
                fields.append((key, str(item).lower() if isinstance(item, bool) else str(item)))
        body, content_type = multipart(fields, upload)
        url = f"{self.base_url}/v1/speech-to-text"
        try:
            response = await with_retries(
                lambda: self.http.post(
                    url,
                    content=body,
                    headers={**self._headers(), "content-type": content_type},
                    timeout=self.timeout,
                ),
                idempotent=False,
            )
        except httpx.HTTPError as exc:
            raise MediaError(
                "upstream_failed",
                f"{model}: ElevenLabs could not be reached: {type(exc).__name__}",
                model=model,
            ) from None
        request_id = response.headers.get("request-id")
        if response.status_code >= 300:
            raise failure(response, provider="elevenlabs", model=model, request_id=request_id)
        try:
            body = response.json()
        except ValueError:
            raise MediaError(
                "upstream_failed",
                f"{model}: ElevenLabs answered something that is not JSON",
                model=model,
                request_id=request_id,
            ) from None
        return Generation(
            request_id=request_id
            or (body.get("transcription_id") if isinstance(body, dict) else None),
            body=body,
        )


def multipart(fields: list[tuple[str, str]], upload: tuple[bytes, str] | None) -> tuple[bytes, str]:
    """A multipart/form-data body (ElevenLabs takes speech-to-text requests only in that form,
    even without a file), and its content type."""
    boundary = f"puras-{uuid.uuid4().hex}"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields
    ]
    if upload is not None:
        content, media_type = upload
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="audio"\r\n'
            f"Content-Type: {media_type}\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _data_uri(value: str, *, model: str, pointer: str) -> tuple[bytes, str]:
    head, _, payload = value.partition(",")
    media_type = head[len("data:") :].split(";")[0] or "application/octet-stream"
    if not head.endswith(";base64"):
        raise MediaError(
            "invalid_request",
            f"{pointer[1:]} must be a base64 data: URI (data:audio/mpeg;base64,…)",
            model=model,
            pointer=pointer,
        )
    if len(payload) > MAX_INLINE_AUDIO_BYTES * 4 // 3 + 4:
        raise MediaError(
            "invalid_request",
            f"{pointer[1:]} is over {MAX_INLINE_AUDIO_BYTES} bytes; pass a URL instead",
            model=model,
            pointer=pointer,
        )
    try:
        return base64.b64decode(payload, validate=True), media_type
    except (binascii.Error, ValueError):
        raise MediaError(
            "invalid_request", f"{pointer[1:]} is not valid base64", model=model, pointer=pointer
        ) from None
