"""Test support: real NATS JetStream and PostgreSQL servers for the suite, and helpers to
wait on events. Loaded as a pytest plugin (``-p puras_common.testing.plugin``)."""

from puras_common.testing.infra import Infra, start_infra
from puras_common.testing.schemas import Scratch, scratch_schema
from puras_common.testing.waiting import EventCollector, eventually

__all__ = ["EventCollector", "Infra", "Scratch", "eventually", "scratch_schema", "start_infra"]
