"""The event envelope: one frozen pydantic model per event type, all sharing these fields.

``{id, type, schema_version, occurred_at, workspace_id, job_id, causation_id, correlation_id,
producer, payload}``. ``id`` is a UUIDv7 minted by the producer and doubles as the
``Nats-Msg-Id`` header, so the server drops a re-publish inside the stream's duplicate window
and consumers drop one outside it (their inbox).

Event classes register themselves in :data:`CATALOGUE` by subclassing :class:`Event`; a type
is added to the catalogue before anything publishes it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, ClassVar, Self, Union
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from puras_common.ids import new_id
from puras_common.streams import StreamSpec


class Payload(BaseModel):
    """Base of every payload: immutable, and tolerant of fields added by newer producers."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Event(BaseModel):
    """Base of every event type."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    subject_pattern: ClassVar[str]
    """``str.format`` pattern over ``job_id`` and ``workspace_id``."""
    stream: ClassVar[StreamSpec]
    current_schema_version: ClassVar[int] = 1

    id: UUID
    type: str
    schema_version: int = 1
    occurred_at: datetime
    workspace_id: UUID | None = None
    job_id: UUID | None = None
    causation_id: UUID | None = None
    correlation_id: UUID
    producer: str
    payload: Payload

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.__name__.startswith("_"):  # an abstract family base such as _JobEvent
            return
        field = cls.model_fields["type"]
        if field.default in (None, ...) or not isinstance(field.default, str):
            raise TypeError(f"{cls.__name__} must give `type` a Literal default")
        if field.default in CATALOGUE:
            raise TypeError(f"event type {field.default!r} registered twice")
        CATALOGUE[field.default] = cls
        _adapter.cache_clear()

    @classmethod
    def new(
        cls,
        payload: Payload,
        *,
        producer: str,
        workspace_id: UUID | None = None,
        job_id: UUID | None = None,
        caused_by: Event | None = None,
        occurred_at: datetime | None = None,
        event_id: UUID | None = None,
    ) -> Self:
        """Mint an event; ``caused_by`` threads causation and correlation ids through."""
        event_id = event_id or new_id()
        # Validated as a mapping: ``type`` comes from the concrete class's Literal default.
        return cls.model_validate(
            {
                "id": event_id,
                "schema_version": cls.current_schema_version,
                "occurred_at": occurred_at or datetime.now(UTC),
                "workspace_id": workspace_id,
                "job_id": job_id,
                "causation_id": caused_by.id if caused_by else None,
                "correlation_id": caused_by.correlation_id if caused_by else event_id,
                "producer": producer,
                "payload": payload,
            }
        )

    @property
    def subject(self) -> str:
        """The NATS subject this event is published on."""
        return self.subject_pattern.format(job_id=self.job_id, workspace_id=self.workspace_id)

    def to_json(self) -> bytes:
        """The wire form."""
        return self.__pydantic_serializer__.to_json(self)


def payload_model(event_type: type[Event]) -> type[Payload]:
    """The payload model an event type declares."""
    annotation = event_type.model_fields["payload"].annotation
    if not (isinstance(annotation, type) and issubclass(annotation, Payload)):
        raise TypeError(f"{event_type.__name__}.payload is not a Payload model: {annotation!r}")
    return annotation


CATALOGUE: dict[str, type[Event]] = {}
"""Every event type by its ``type`` string."""

UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}
"""``(type, from_version) -> fn(payload) -> payload of from_version + 1``."""


class UnknownEventType(ValueError):
    """An event whose ``type`` is not in this process's catalogue."""

    def __init__(self, event_type: object) -> None:
        super().__init__(f"unknown event type {event_type!r}; known: {len(CATALOGUE)} types")
        self.event_type = event_type


@cache
def _adapter() -> TypeAdapter[Event]:
    members = tuple(CATALOGUE.values())
    union = members[0] if len(members) == 1 else Union[members]  # noqa: UP007
    # A union built at run time from the catalogue: a value here, not a type mypy can see.
    form: Any = Annotated[union, Field(discriminator="type")]
    adapter: TypeAdapter[Event] = TypeAdapter(form)
    return adapter


def parse_event(raw: bytes | str | dict[str, Any]) -> Event:
    """Decode one event from its wire form, upcasting an older payload to the current version."""
    data = orjson.loads(raw) if isinstance(raw, bytes | str) else dict(raw)
    event_type = data.get("type")
    cls = CATALOGUE.get(event_type) if isinstance(event_type, str) else None
    if cls is None:
        raise UnknownEventType(event_type)
    version = int(data.get("schema_version", 1))
    while version < cls.current_schema_version:
        data["payload"] = UPCASTERS[(cls.model_fields["type"].default, version)](data["payload"])
        version += 1
    data["schema_version"] = version
    return _adapter().validate_python(data)
