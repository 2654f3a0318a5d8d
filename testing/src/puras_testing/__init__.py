"""Test support, for tests and benchmarks only: real NATS JetStream and PostgreSQL servers for
the suite, helpers to wait on events, the whole platform as processes (:mod:`.platform`), and
local servers speaking the providers' wire formats (:mod:`.models`, :mod:`.web`, :mod:`.media`).

A development-only workspace member: none of this ships inside a service or library, and no
shipped package imports it. Loaded as a pytest plugin (``-p puras_testing.plugin``)."""

from puras_testing.infra import Infra, start_infra
from puras_testing.schemas import Scratch, scratch_schema
from puras_testing.waiting import EventCollector, eventually

__all__ = ["EventCollector", "Infra", "Scratch", "eventually", "scratch_schema", "start_infra"]
