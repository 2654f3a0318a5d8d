"""Who may do what on the control plane (ARCHITECTURE §8).

Every service has its own NATS user, allowed to publish only the event subjects it owns and to
answer only its own ``svc.<service>.*`` endpoints, and (if it keeps state) its own PostgreSQL
role owning only its schema. Jobs are given none of these credentials.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Final

SERVICES: Final = (
    "gateway",
    "deployments",
    "scheduler",
    "function-runner",
    "agent-runner",
    "billing",
    "drive",
)

STATEFUL: Final = ("gateway", "deployments", "scheduler", "billing", "drive")
"""Services that own a PostgreSQL schema (named after the service)."""

_RUNNER_EVENTS = (
    "job.*.started",
    "job.*.log",
    "job.*.output",
    "usage.*.recorded",
    "job.*.usage",
)
"""Runners report a job's end to the scheduler, which emits the terminal event (attempt fencing)."""

EVENT_PUBLISH: Final[dict[str, tuple[str, ...]]] = {
    "gateway": (
        "job.*.submitted",
        "job.*.cancel_requested",
        "job.*.subagent",
        "job.*.usage",
        "usage.*.recorded",
        "feedback.>",
        "key.>",
        "workspace.>",
    ),
    "deployments": ("deployment.>", "secret.>"),
    "scheduler": (
        "run.function",
        "run.agent",
        "run.function.child",
        "run.agent.child",
        "job.*.dispatched",
        "job.*.cancel_requested",
        "job.*.retrying",
        "job.*.succeeded",
        "job.*.failed",
        "job.*.cancelled",
    ),
    "function-runner": _RUNNER_EVENTS,
    "agent-runner": (
        *_RUNNER_EVENTS,
        "job.*.agent.started",
        "job.*.step.completed",
        "job.*.tool.called",
        "job.*.tool.completed",
    ),
    "billing": ("ledger.*.posted", "balance.*.changed"),
    "drive": ("drive.>",),
}
"""The event subjects each service may publish: its half of the catalogue."""

CORE_SUBSCRIBE: Final[dict[str, tuple[str, ...]]] = {
    "gateway": ("job.>",),  # live fan-out of job events to SSE clients
    "function-runner": ("job.*.cancel_requested",),  # stop a running job
    "agent-runner": ("job.*.cancel_requested",),
}
"""Plain NATS subscriptions on stream subjects (beyond JetStream consumers)."""

_JS_DENY: Final = (
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    "$JS.API.STREAM.MSG.DELETE.>",
)

SECRETS_REQUESTERS: Final = ("function-runner", "agent-runner")
"""The only services that may ask for a job's secrets (``svc.deployments.secrets``)."""


@dataclass(frozen=True)
class NatsPermissions:
    publish_allow: tuple[str, ...]
    publish_deny: tuple[str, ...] = ()
    subscribe_allow: tuple[str, ...] = ()
    subscribe_deny: tuple[str, ...] = ()


@dataclass(frozen=True)
class NatsUser:
    name: str
    password: str
    permissions: NatsPermissions | None = None
    """None: everything (the operator's admin user)."""


def service_permissions(service: str) -> NatsPermissions:
    """What ``service``'s NATS user may publish and subscribe to."""
    return NatsPermissions(
        publish_allow=(
            *EVENT_PUBLISH[service],
            "dlq.>",
            "svc.>",
            "$JS.API.>",
            "$JS.ACK.>",
            "$JS.FC.>",  # flow-control replies: without them an ordered consumer stalls under load
            "_INBOX.>",
        ),
        publish_deny=(*_JS_DENY, *(() if service in SECRETS_REQUESTERS else ("svc.deployments.secrets",))),
        subscribe_allow=("_INBOX.>", f"svc.{service}.>", *CORE_SUBSCRIBE.get(service, ())),
    )


def role_name(service: str, prefix: str = "puras") -> str:
    """The PostgreSQL role of a stateful service (``puras_gateway``)."""
    return f"{prefix}_{service.replace('-', '_')}"


def schema_name(service: str) -> str:
    """The PostgreSQL schema a stateful service owns."""
    return service.replace("-", "_")


def new_password() -> str:
    """A random credential for a service user or role."""
    return secrets.token_urlsafe(24)


@dataclass
class Credentials:
    """Every control-plane secret of one installation, kept under ``.puras/`` (mode 0600)."""

    nats: dict[str, str] = field(default_factory=dict)
    postgres: dict[str, str] = field(default_factory=dict)
    internal_token: str = field(default_factory=new_password)
    job_token_key: str = field(default_factory=new_password)
    admin_token: str = field(default_factory=new_password)
    secrets_key: str = field(default_factory=lambda: secrets.token_hex(32))
    drive_signing_key: str = field(default_factory=new_password)

    @classmethod
    def generate(cls) -> Credentials:
        creds = cls()
        creds.nats = {name: new_password() for name in (*SERVICES, "admin")}
        creds.postgres = {name: new_password() for name in (*STATEFUL, "admin")}
        return creds

    def nats_users(self) -> list[NatsUser]:
        users = [NatsUser(s, self.nats[s], service_permissions(s)) for s in SERVICES]
        users.append(NatsUser("admin", self.nats["admin"]))
        return users
