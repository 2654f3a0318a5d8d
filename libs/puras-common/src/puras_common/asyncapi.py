"""The internal bus as an AsyncAPI 3 document, generated from the event catalogue.

Extensions (a consumer that posts failed jobs to a chat, an exporter to a warehouse) subscribe
to the platform's JetStream subjects with NATS users of their own. This document is their
contract: every subject, the stream that keeps it and how it is delivered, and the JSON Schema
of every payload. It is generated from :data:`puras_common.envelope.CATALOGUE` and the stream
definitions, checked in as ``docs/asyncapi.yaml`` (``puras admin asyncapi`` writes it), and a
test fails when the two disagree.
"""

from __future__ import annotations

import re
from typing import Any, Final

import yaml

from puras_common import events as _events  # noqa: F401  (registers the catalogue)
from puras_common import streams
from puras_common.envelope import CATALOGUE, Event
from puras_common.streams import StreamSpec

VERSION: Final = "1.0.0"

DELIVERY: Final[dict[str, str]] = {
    "JOBS": (
        "At least once, in order per job. Kept for good (limits retention); the stream "
        "sequence is the public event id. A re-publish of the same Nats-Msg-Id within the "
        "duplicate window is dropped by the server; consumers skip any later duplicate by "
        "event id."
    ),
    "WORK": (
        "Work queue: each message is delivered to exactly one consumer and removed once "
        "acknowledged. Reserved for the runners; extensions cannot read it."
    ),
    "USAGE": "At least once; consumers deduplicate by event id (billing charges each id once).",
    "LEDGER": (
        "At least once; balance.changed carries a version, so a consumer keeps the highest."
    ),
    "PLATFORM": "At least once; consumers deduplicate by event id.",
    "DLQ": (
        "Messages a consumer gave up on, with why in headers (Puras-Dlq-*); kept 30 days, "
        "never dropped silently."
    ),
}

_PARAM = re.compile(r"\{(\w+)\}")
_PARAM_DESCRIPTIONS: Final = {
    "job_id": "The job's id (a UUID).",
    "workspace_id": "The workspace's id (a UUID).",
    "user_id": "The user's id (a UUID).",
    "verb": "What happened to the user (the last word of the event type).",
}


def _stream_of(cls: type[Event]) -> StreamSpec:
    return cls.stream


def _addresses(cls: type[Event]) -> list[str]:
    """The subject patterns an event type is published on (runs of subagents have their own)."""
    if cls.stream is streams.WORK:
        child = f"{cls.subject_pattern}.child"
        return (
            [cls.subject_pattern, child] if child in cls.stream.subjects else [cls.subject_pattern]
        )
    return [cls.subject_pattern]


def _schemas(cls: type[Event], into: dict[str, Any]) -> dict[str, str]:
    """Put the event's JSON Schema (and its nested models) under ``into``; returns its $ref."""
    schema = cls.model_json_schema(
        ref_template="#/components/schemas/{model}", mode="serialization"
    )
    for name, sub in schema.pop("$defs", {}).items():
        into.setdefault(name, sub)
    into[cls.__name__] = schema
    return {"$ref": f"#/components/schemas/{cls.__name__}"}


HEADERS: Final = {
    "type": "object",
    "properties": {
        "Nats-Msg-Id": {
            "type": "string",
            "description": "The event's id: JetStream drops a re-publish of it within the "
            "duplicate window.",
        },
        "traceparent": {
            "type": "string",
            "description": "W3C trace context of the span that published the event; the trace id "
            "of a job's events is the job's id. Present when tracing is on.",
        },
    },
    "required": ["Nats-Msg-Id"],
}


def _channel(address: str, stream: StreamSpec, message: str) -> dict[str, Any]:
    params = _PARAM.findall(address)
    channel: dict[str, Any] = {
        "address": address,
        "description": f"Stream {stream.name}. {DELIVERY[stream.name]}",
        "messages": {message: {"$ref": f"#/components/messages/{message}"}},
        "x-puras-stream": stream.name,
        "x-puras-retention": stream.retention.value,
    }
    if params:
        channel["parameters"] = {
            p: {"description": _PARAM_DESCRIPTIONS.get(p, f"The {p.removesuffix('_id')}'s id.")}
            for p in params
        }
    return channel


def _channel_id(address: str) -> str:
    return _PARAM.sub(lambda m: m.group(1), address).replace(".", "_")


def render() -> str:
    """The document as the YAML checked in under ``docs/asyncapi.yaml``."""
    header = (
        "# Generated from the event catalogue by `puras admin asyncapi`; do not edit by hand.\n"
    )
    body: str = yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=100)
    return header + body


def document() -> dict[str, Any]:
    """The whole AsyncAPI 3 document, deterministic (sorted) so a diff shows a real change."""
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for event_type in sorted(CATALOGUE):
        cls = CATALOGUE[event_type]
        name = cls.__name__
        messages[name] = {
            "name": event_type,
            "title": name,
            "summary": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else event_type,
            "contentType": "application/json",
            "headers": HEADERS,
            "payload": _schemas(cls, schemas),
        }
        for address in _addresses(cls):
            channel_id = _channel_id(address)
            channels[channel_id] = _channel(address, _stream_of(cls), name)
            operations[f"receive_{channel_id}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "summary": f"Consume {event_type} from stream {cls.stream.name}.",
            }
    dlq = "dlq.{stream}.{consumer}"
    channels["dlq_stream_consumer"] = {
        "address": dlq,
        "description": f"Stream DLQ. {DELIVERY['DLQ']}",
        "parameters": {
            "stream": {"description": "The stream the message came from."},
            "consumer": {"description": "The durable consumer that gave up on it."},
        },
        "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
        "x-puras-stream": "DLQ",
        "x-puras-retention": streams.DLQ.retention.value,
    }
    operations["receive_dlq_stream_consumer"] = {
        "action": "receive",
        "channel": {"$ref": "#/channels/dlq_stream_consumer"},
        "summary": "Consume dead letters.",
    }
    messages["DeadLetter"] = {
        "name": "dead-letter",
        "title": "DeadLetter",
        "summary": "The original message's body, as it was, with why it was parked.",
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "properties": {
                h: {"type": "string"}
                for h in (
                    "Puras-Dlq-Stream",
                    "Puras-Dlq-Consumer",
                    "Puras-Dlq-Subject",
                    "Puras-Dlq-Stream-Seq",
                    "Puras-Dlq-Deliveries",
                    "Puras-Dlq-Reason",
                )
            },
        },
        "payload": {"description": "The body of the message that was given up on."},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Puras internal events",
            "version": VERSION,
            "description": (
                "Every JetStream subject of the platform, its payload and how it is delivered. "
                "Events are JSON envelopes {id, type, occurred_at, workspace_id, job_id, "
                "causation_id, correlation_id, producer, payload}. An extension reads them "
                "with a NATS user of its own and a durable consumer named after it "
                "(docs/extensions.md)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {
                "host": "nats:4222",
                "protocol": "nats",
                "description": "NATS JetStream (one machine: the port in .puras/ports.json).",
            }
        },
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {
            "messages": dict(sorted(messages.items())),
            "schemas": dict(sorted(schemas.items())),
        },
        "x-puras-streams": {
            s.name: {
                "subjects": list(s.subjects),
                "retention": s.retention.value,
                "duplicate_window_seconds": s.duplicate_window_seconds,
                "delivery": DELIVERY[s.name],
            }
            for s in streams.ALL
        },
    }
