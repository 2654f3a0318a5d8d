"""Who may do what on the control plane (ARCHITECTURE §8).

Every service has its own NATS user, allowed to publish only the event subjects it owns, to
call only the endpoints it needs and answer only its own ``svc.<service>.*`` ones, to read only
through its own consumers (:mod:`puras_common.consumers`, created by the provisioning step with
the admin user), and to receive replies only on its own inbox prefix; and (if it keeps state)
its own PostgreSQL role owning only its schema. Jobs are given none of these credentials.

To let a service publish a new event, add its subject to :data:`EVENT_PUBLISH`; to let it call
another service, add the endpoint to :data:`REQUESTS`; to let it read a stream, add a consumer
to :mod:`puras_common.consumers`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from puras_common import subjects
from puras_common.consumers import EPHEMERAL_READERS, durable_consumers

SERVICES: Final = (
    "gateway",
    "deployments",
    "scheduler",
    "function-runner",
    "agent-runner",
    "billing",
    "drive",
    "webhooks",
)

STATEFUL: Final = ("gateway", "deployments", "scheduler", "billing", "drive", "webhooks")
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
        "job.*.input_provided",
        "job.*.subagent",
        "job.*.usage",
        "usage.*.recorded",
        "feedback.>",
        "key.>",
        "workspace.>",
        "schedule.*.set",
        "schedule.*.deleted",
        "user.>",
        "member.>",
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
        "job.*.wait_changed",
        "job.*.succeeded",
        "job.*.failed",
        "job.*.cancelled",
        "job.*.input_requested",
        "schedule.*.fired",
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
    "webhooks": ("webhook.>",),
}
"""The event subjects each service may publish: its half of the catalogue."""

CORE_SUBSCRIBE: Final[dict[str, tuple[str, ...]]] = {
    "function-runner": ("job.*.cancel_requested",),  # stop a running job
    "agent-runner": ("job.*.cancel_requested",),
}
"""Plain NATS subscriptions on stream subjects (beyond JetStream consumers)."""

REQUESTS: Final[dict[str, tuple[str, ...]]] = {
    "gateway": (
        "svc.webhooks.*",  # the webhooks API
        "svc.scheduler.attempt",  # is a job token's attempt still running?
        "svc.scheduler.waiting",  # why queued jobs wait
        "svc.billing.hold",  # a media call's budget (puras.media from skills)
        "svc.billing.release",
        "svc.*.health",  # the ops page asks every service
    ),
    "deployments": ("svc.scheduler.attempt",),
    "scheduler": ("svc.function-runner.holds", "svc.agent-runner.holds"),
    "function-runner": ("svc.scheduler.claim", "svc.scheduler.complete", "svc.deployments.secrets"),
    "agent-runner": (
        "svc.scheduler.claim",
        "svc.scheduler.complete",
        "svc.deployments.secrets",
        "svc.billing.hold",  # a model or media call's budget
        "svc.billing.release",
    ),
    "billing": (),
    "drive": (),
    "webhooks": (),
}
"""The ``svc.<service>.<verb>`` endpoints each service may call (it answers its own)."""

SECRETS_REQUESTERS: Final = tuple(s for s in SERVICES if "svc.deployments.secrets" in REQUESTS[s])
"""The only services that may ask for a job's secrets (``svc.deployments.secrets``)."""


def inbox_prefix(service: str) -> str:
    """Where ``service``'s replies arrive: only it may subscribe there, so no other service can
    read the answers it gets (a job's secrets, the scheduler's claims)."""
    return f"_INBOX.{service}"


@dataclass(frozen=True)
class NatsPermissions:
    publish_allow: tuple[str, ...]
    publish_deny: tuple[str, ...] = ()
    subscribe_allow: tuple[str, ...] = ()
    subscribe_deny: tuple[str, ...] = ()
    allow_responses: bool = False
    """May answer a request it received (once, to the reply subject the request named)."""


@dataclass(frozen=True)
class NatsUser:
    name: str
    password: str
    permissions: NatsPermissions | None = None
    """None: everything (the operator's admin user, which provisions streams and consumers)."""


def _consumer_api(stream: str, consumer: str) -> tuple[str, ...]:
    """Read through one existing consumer: look at it, pull from it, acknowledge."""
    return (
        f"$JS.API.CONSUMER.INFO.{stream}.{consumer}",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
    )


def service_permissions(service: str) -> NatsPermissions:
    """What ``service``'s NATS user may publish and subscribe to: its own events, the endpoints
    it calls, and reads through its own provisioned consumers; no stream or consumer management
    (but short-lived consumers of its own where :data:`EPHEMERAL_READERS` says so)."""
    durables = durable_consumers()
    own = durables[service]
    publish = [*EVENT_PUBLISH[service], *REQUESTS[service]]
    for spec in own:
        publish.append(subjects.dlq(spec.stream.name, spec.durable))
        publish.extend(_consumer_api(spec.stream.name, spec.durable))
    deny: list[str] = []
    for stream in EPHEMERAL_READERS.get(service, ()):
        # Consumers it names itself (the server takes the name from the subject, so a request
        # cannot reach a durable by naming it in its body), read and deleted by that name; and
        # stored messages read without a consumer (batched direct gets).
        publish += [
            f"$JS.API.CONSUMER.CREATE.{stream}.*",
            f"$JS.API.CONSUMER.CREATE.{stream}.*.>",
            *_consumer_api(stream, "*"),
            f"$JS.API.CONSUMER.DELETE.{stream}.*",
            f"$JS.API.DIRECT.GET.{stream}",
        ]
        for spec in (s for specs in durables.values() for s in specs):
            if spec.stream.name != stream:
                continue
            d = spec.durable
            deny += [
                f"$JS.API.CONSUMER.CREATE.{stream}.{d}",
                f"$JS.API.CONSUMER.CREATE.{stream}.{d}.>",
                f"$JS.API.CONSUMER.DELETE.{stream}.{d}",
            ]
            if spec not in own:  # another service's work: never pull or acknowledge it
                deny += [f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{d}", f"$JS.ACK.{stream}.{d}.>"]
    return NatsPermissions(
        publish_allow=tuple(dict.fromkeys(publish)),
        publish_deny=tuple(deny),
        subscribe_allow=(
            f"{inbox_prefix(service)}.>",
            f"svc.{service}.>",
            *CORE_SUBSCRIBE.get(service, ()),
        ),
        allow_responses=True,
    )


def extension_permissions(name: str, *, stream: str, filter_subject: str) -> NatsPermissions:
    """What an extension's NATS user may do: read ``stream``, through one durable consumer
    named ``name`` whose filter is ``filter_subject`` (or narrower), and nothing else. The
    filter travels in the create request's subject (NATS 2.10), where permissions can see it;
    the server refuses a body whose filter differs from it."""
    consumer = f"$JS.API.CONSUMER.%s.{stream}.{name}"
    return NatsPermissions(
        publish_allow=(
            "$JS.API.INFO",
            f"$JS.API.CONSUMER.CREATE.{stream}.{name}.{filter_subject}",
            consumer % "INFO",
            consumer % "MSG.NEXT",
            f"$JS.ACK.{stream}.{name}.>",
        ),
        subscribe_allow=("_INBOX.>",),
    )


SERVICE_SECRETS: Final[dict[str, tuple[str, ...]]] = {
    "gateway": (
        "PURAS_INTERNAL_TOKEN",  # calls the drive's and deployments' internal listeners
        "PURAS_JOB_TOKEN_KEY",  # checks job tokens
        "PURAS_ADMIN_TOKEN",
        "PURAS_SESSION_KEY",
        "PURAS_FAL_API_KEY",  # media calls made for jobs
        "PURAS_ELEVENLABS_API_KEY",
    ),
    "deployments": (
        "PURAS_INTERNAL_TOKEN",
        "PURAS_JOB_TOKEN_KEY",  # checks the token a runner asks for a job's secrets with
        "PURAS_SECRETS_KEY",
        "AWS_ACCESS_KEY_ID",  # bundles in S3
        "AWS_SECRET_ACCESS_KEY",
    ),
    "scheduler": (),
    "function-runner": ("PURAS_INTERNAL_TOKEN", "PURAS_JOB_TOKEN_KEY"),
    "agent-runner": (
        "PURAS_INTERNAL_TOKEN",
        "PURAS_JOB_TOKEN_KEY",
        "PURAS_ANTHROPIC_API_KEY",
        "PURAS_OPENAI_API_KEY",
        "PURAS_GEMINI_API_KEY",
        "PURAS_FAL_API_KEY",
        "PURAS_ELEVENLABS_API_KEY",
        "PURAS_SEARCH_API_KEY",
    ),
    "billing": (),
    "drive": (
        "PURAS_INTERNAL_TOKEN",
        "PURAS_DRIVE_SIGNING_KEY",  # signs and checks drive links
        "AWS_ACCESS_KEY_ID",  # the drive in S3
        "AWS_SECRET_ACCESS_KEY",
    ),
    "webhooks": (),
}
"""The secrets each service is given, and no others: the one table behind ``puras up``'s
environments, the test harness, ``deploy/compose.yml`` and docs/operations.md (a test keeps them
in step). Runners hold no admin token, secrets master key or link-signing key."""

SECRET_VARIABLES: Final = frozenset(v for names in SERVICE_SECRETS.values() for v in names)


def operator_secrets(service: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The secrets the operator set in ``environ`` (provider keys, S3) that ``service`` is given."""
    return {v: environ[v] for v in SERVICE_SECRETS[service] if v in environ}


CREDENTIAL_VARIABLES: Final = {
    "PURAS_INTERNAL_TOKEN": "internal_token",
    "PURAS_JOB_TOKEN_KEY": "job_token_key",
    "PURAS_ADMIN_TOKEN": "admin_token",
    "PURAS_SECRETS_KEY": "secrets_key",
    "PURAS_DRIVE_SIGNING_KEY": "drive_signing_key",
    "PURAS_SESSION_KEY": "session_key",
}
"""The secrets an installation generates (:class:`Credentials`), by environment variable."""


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
    session_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    """Signs the console's session tokens (JWT, HS256)."""

    @classmethod
    def generate(cls) -> Credentials:
        creds = cls()
        creds.nats = {name: new_password() for name in (*SERVICES, "admin")}
        creds.postgres = {name: new_password() for name in (*STATEFUL, "admin")}
        return creds

    def secrets_env(self, service: str) -> dict[str, str]:
        """The generated secrets ``service`` is given (:data:`SERVICE_SECRETS`), as environment."""
        return {
            variable: getattr(self, CREDENTIAL_VARIABLES[variable])
            for variable in SERVICE_SECRETS[service]
            if variable in CREDENTIAL_VARIABLES
        }

    def nats_users(self) -> list[NatsUser]:
        users = [NatsUser(s, self.nats[s], service_permissions(s)) for s in SERVICES]
        users.append(NatsUser("admin", self.nats["admin"]))
        return users
