"""The webhooks service as the gateway calls it on a caller's behalf (``svc.webhooks.<verb>``,
core NATS request/reply), for the caller's own workspace only. Its answer is already the public
one; a new signing secret comes back sealed to a key this call made, and is opened here, so it
crosses the bus only as ciphertext."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import nats.errors
from fastapi.responses import JSONResponse
from puras_common.api import ApiError, ErrorCode
from puras_common.secret_delivery import new_reply_key, open_sealed
from puras_common.webhooks import WebhookReply, WebhookRequest, subject

from puras_gateway.context import Gateway
from puras_gateway.keys import Principal

TIMEOUT_SECONDS = 20.0
"""Making an endpoint resolves its host (the SSRF guard's check): allow a slow DNS answer."""


async def call(
    gw: Gateway,
    verb: str,
    who: Principal,
    *,
    seal: bool = False,
    **fields: Any,
) -> JSONResponse:
    """Ask the webhooks service; its answer as the client's. 503 when it does not answer."""
    private, public = new_reply_key() if seal else (None, None)
    request = WebhookRequest(workspace_id=who.workspace_id, reply_key=public, **fields)
    try:
        msg = await gw.runtime.nc.request(
            subject(verb), request.model_dump_json().encode(), timeout=TIMEOUT_SECONDS
        )
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        raise ApiError(
            ErrorCode.UNAVAILABLE,
            "the webhooks service did not answer; retry shortly",
            headers={"Retry-After": "2"},
        ) from None
    reply = WebhookReply.model_validate_json(msg.data)
    body = reply.body
    if reply.sealed_secret is not None and private is not None and isinstance(body, dict):
        opened = open_sealed(reply.sealed_secret, private, bound_to=UUID(body["id"]))
        body = {**body, "secret": opened["secret"]}
    headers = {"Location": f"/v1/webhooks/{body['id']}"} if reply.status == 201 else None
    return JSONResponse(body, status_code=reply.status, headers=headers)
