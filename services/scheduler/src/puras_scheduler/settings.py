"""Scheduler settings (``PURAS_SCHEDULER_*`` beats ``PURAS_*``)."""

from __future__ import annotations

from typing import ClassVar

from puras_common.settings import ServiceSettings


class SchedulerSettings(ServiceSettings):
    service: ClassVar[str] = "scheduler"

    max_concurrency_per_workspace: int = 64
    """Jobs of one workspace dispatched or running at once; the rest wait queued."""
    dispatch_batch: int = 256
    max_attempts: int = 3
    """Runs of a deterministic job whose worker keeps getting lost, before it fails."""
    lost_grace_seconds: int = 120
    """How long past its timeout a running job may go unheard of before it is failed."""
    schedule_grace_seconds: float = 60.0
    """How late a schedule's fire time may be and still fire (a busy or restarting scheduler);
    older fire times were missed, and the schedule's policy skips or catches them up."""
