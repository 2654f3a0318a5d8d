"""The gateway ↔ webhooks service protocol (core NATS request/reply), and what is shared about
webhooks: the job events they carry and how a target URL is checked.

The webhooks service owns endpoints, their signing secrets and every delivery; the gateway
authenticates the caller and asks it, on ``svc.webhooks.<verb>``, naming the caller's workspace.
The answer is the public API's answer already (``status`` and ``body``, errors in the public
error shape), so the gateway passes it on. A new signing secret never crosses the bus in clear:
the gateway sends a one-off public key (``reply_key``) and the secret comes back sealed to it
(:mod:`puras_common.secret_delivery`).
"""

from __future__ import annotations

from typing import Any, Final, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from puras_common import subjects

VERBS: Final = (
    "create",
    "list",
    "get",
    "update",
    "delete",
    "rotate",
    "deliveries",
    "redeliver",
)
"""Each is answered on ``svc.webhooks.<verb>``."""

EVENT_TYPES: Final = ("job.succeeded", "job.failed", "job.cancelled", "job.waiting_for_input")
"""What an endpoint can subscribe to (all of them by default)."""

MAX_URL_CHARS: Final = 2048


def subject(verb: str) -> str:
    return subjects.svc("webhooks", verb)


class WebhookRequest(BaseModel):
    """One call on a workspace's webhooks; which fields matter depends on the verb."""

    model_config = ConfigDict(frozen=True)

    workspace_id: UUID
    endpoint_id: str | None = None
    """As the client wrote it in the path (the service parses it: a bad one is a 404)."""
    delivery_id: str | None = None
    body: dict[str, Any] | None = None
    reply_key: str | None = None
    """base64 X25519 public key: a new secret in the answer is sealed to it."""
    limit: int = 25
    cursor: str | None = None
    status: str | None = None


class WebhookReply(BaseModel):
    """The public answer: its HTTP status and JSON body, plus a sealed secret when one was made."""

    status: int
    body: Any = None
    sealed_secret: dict[str, str] | None = None
    """``secret_delivery.seal`` of ``{"secret": ...}``, bound to the endpoint's id."""


class TargetError(ValueError):
    """A URL that cannot be a webhook target; the message says why."""


def check_target(url: str) -> str:
    """The URL, if it can be a target at all (http(s), a host, no credentials, bounded);
    whether its host may be reached is the SSRF guard's decision, made where it is sent."""
    if len(url) > MAX_URL_CHARS:
        raise TargetError(f"the URL is {len(url)} characters; the limit is {MAX_URL_CHARS}")
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise TargetError(f"not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise TargetError(f"only http and https URLs can receive webhooks, not {parts.scheme!r}")
    if not parts.hostname:
        raise TargetError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetError("the URL must not carry credentials (user:password@)")
    if parts.fragment:
        raise TargetError("the URL must not have a #fragment")
    return url


Kind = Literal["endpoint", "job_url"]
"""``endpoint``: registered with a URL; ``job_url``: the workspace's one signer and log for the
``webhook_url`` that single jobs name."""
