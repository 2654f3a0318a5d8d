"""``docs/asyncapi.yaml`` is the event catalogue as it is: regenerated, it comes out the same;
it names every event type and stream subject, and every reference in it resolves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from puras_common import streams
from puras_common.asyncapi import document, render
from puras_common.envelope import CATALOGUE

DOC = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"


def test_the_checked_in_document_is_the_catalogue() -> None:
    assert DOC.read_text() == render(), (
        "docs/asyncapi.yaml disagrees with the event catalogue; regenerate it with "
        "`puras admin asyncapi > docs/asyncapi.yaml`"
    )


def test_every_event_type_and_stream_has_its_channel() -> None:
    doc = yaml.safe_load(DOC.read_text())
    assert doc["asyncapi"].startswith("3.")
    names = {m["name"] for m in doc["components"]["messages"].values()}
    assert set(CATALOGUE) <= names
    addresses = {c["address"] for c in doc["channels"].values()}
    for cls in CATALOGUE.values():
        assert cls.subject_pattern in addresses, cls.__name__
    for stream in streams.ALL:
        assert doc["x-puras-streams"][stream.name]["subjects"] == list(stream.subjects)
        assert doc["x-puras-streams"][stream.name]["delivery"]
        assert any(c["x-puras-stream"] == stream.name for c in doc["channels"].values())
    for operation in doc["operations"].values():
        assert operation["action"] == "receive"


def test_every_reference_resolves() -> None:
    doc = document()

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(doc):
        target: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            assert part in target, f"{ref} does not resolve"
            target = target[part]
