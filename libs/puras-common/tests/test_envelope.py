import uuid

import pytest
from puras_common.envelope import UPCASTERS, UnknownEventType, parse_event
from puras_common.events import JobSubmitted, WorkspaceCreated
from puras_common.events.jobs import JobSpec
from puras_common.events.platform import WorkspaceCreatedPayload
from pydantic import ValidationError


def spec(**kw: object) -> JobSpec:
    base = dict(
        skill_name="echo",
        skillpack_id=uuid.uuid4(),
        skillpack_slug="default",
        owner_workspace_id=uuid.uuid4(),
        deployment_id=uuid.uuid4(),
        version=1,
        kind="function",
        entrypoint="main.py:run",
        timeout_seconds=30,
        inputs={"text": "hi"},
    )
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field_and_the_subject() -> None:
    job_id = uuid.uuid4()
    event = JobSubmitted.new(spec(), producer="gateway", job_id=job_id, workspace_id=uuid.uuid4())
    parsed = parse_event(event.to_json())
    assert parsed == event
    assert isinstance(parsed, JobSubmitted)
    assert parsed.subject == f"job.{job_id}.submitted"
    assert parsed.correlation_id == event.id


def test_causation_threads_correlation() -> None:
    first = WorkspaceCreated.new(
        WorkspaceCreatedPayload(slug="a", name="A"), producer="t", workspace_id=uuid.uuid4()
    )
    second = WorkspaceCreated.new(
        WorkspaceCreatedPayload(slug="a", name="A"),
        producer="t",
        workspace_id=uuid.uuid4(),
        caused_by=first,
    )
    assert second.causation_id == first.id
    assert second.correlation_id == first.correlation_id


def test_events_are_immutable() -> None:
    event = WorkspaceCreated.new(
        WorkspaceCreatedPayload(slug="a", name="A"), producer="t", workspace_id=uuid.uuid4()
    )
    with pytest.raises(ValidationError):
        event.producer = "other"  # type: ignore[misc]


def test_unknown_type_is_named() -> None:
    with pytest.raises(UnknownEventType, match=r"job\.teleported"):
        parse_event(b'{"type": "job.teleported"}')


def test_older_payloads_are_upcast(monkeypatch: pytest.MonkeyPatch) -> None:
    event = WorkspaceCreated.new(
        WorkspaceCreatedPayload(slug="a", name="A"), producer="t", workspace_id=uuid.uuid4()
    )
    old = event.model_dump(mode="json")
    old["payload"] = {"slug": "a", "title": "Old name"}  # version 1 called it "title"
    monkeypatch.setattr(WorkspaceCreated, "current_schema_version", 2)
    monkeypatch.setitem(
        UPCASTERS, ("workspace.created", 1), lambda p: {"slug": p["slug"], "name": p.pop("title")}
    )
    parsed = parse_event(old)
    assert parsed.payload.name == "Old name"  # type: ignore[attr-defined]
    assert parsed.schema_version == 2
