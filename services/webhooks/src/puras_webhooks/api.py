"""Answering the gateway on ``svc.webhooks.<verb>``: each request names the caller's workspace
(the gateway authenticated it); the answer is the public API's status and body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from nats.aio.msg import Msg
from puras_common.api import ApiError, ErrorCode
from puras_common.logging import get_logger
from puras_common.webhooks import WebhookReply, WebhookRequest
from pydantic import ValidationError

from puras_webhooks import deliveries
from puras_webhooks.endpoints import Registry

log = get_logger("puras_webhooks.api")

Handler = Callable[[WebhookRequest], Awaitable[WebhookReply]]


class Api:
    def __init__(self, registry: Registry, *, on_redeliver: Callable[[], None]) -> None:
        self.registry = registry
        self.on_redeliver = on_redeliver
        self.verbs: Final[dict[str, Handler]] = {
            "create": registry.create,
            "list": registry.list,
            "get": registry.get,
            "update": registry.update,
            "delete": registry.delete,
            "rotate": registry.rotate,
            "deliveries": lambda req: deliveries.listing(registry, req),
            "redeliver": self._redeliver,
        }

    async def _redeliver(self, req: WebhookRequest) -> WebhookReply:
        reply = await deliveries.redeliver(self.registry, req)
        self.on_redeliver()
        return reply

    async def serve(self, msg: Msg) -> None:
        """Answer one request; errors become the public error body, never an exception."""
        if not msg.reply:
            return
        verb = msg.subject.rsplit(".", 1)[-1]
        try:
            request = WebhookRequest.model_validate_json(msg.data)
            handler = self.verbs.get(verb)
            if handler is None:
                raise ApiError(ErrorCode.NOT_FOUND, f"no webhooks operation {verb!r}")
            reply = await handler(request)
        except ApiError as exc:
            reply = WebhookReply(status=exc.status, body=exc.body())
        except ValidationError as exc:
            reply = WebhookReply(
                status=400,
                body=ApiError(ErrorCode.INVALID_REQUEST, f"malformed request: {exc}").body(),
            )
        except Exception:
            log.exception("webhooks request failed", verb=verb)
            reply = WebhookReply(
                status=500,
                body=ApiError(
                    ErrorCode.INTERNAL_ERROR, "internal error; it has been logged"
                ).body(),
            )
        await msg.respond(reply.model_dump_json().encode())
