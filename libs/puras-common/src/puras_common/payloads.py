"""Job inputs and results too large to ride on the bus, kept as objects by the drive service.

Events carry the object's key instead (``inputs_ref`` / ``result_ref``). Keys are
``payloads/<workspace_id>/<job_id>/<name>.json``; only the platform's services can reach them
(the drive's internal listener, with the internal token).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
import orjson

from puras_common.drive import request_retried


class PayloadStoreError(RuntimeError):
    """The drive did not store or return a payload object."""


def payload_key(workspace_id: UUID, job_id: UUID, name: str) -> str:
    return f"payloads/{workspace_id}/{job_id}/{name}.json"


class PayloadStore:
    """Client of the drive's internal payload endpoints."""

    def __init__(
        self, base_url: str, *, token: str, client: httpx.AsyncClient | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.client = client or httpx.AsyncClient(timeout=60.0)

    async def put(self, key: str, value: Any) -> str:
        """Store ``value`` as JSON under ``key``; returns the key."""
        body = orjson.dumps(value)
        await self._request("PUT", key, content=body)
        return key

    async def get(self, key: str) -> Any:
        response = await self._request("GET", key)
        return orjson.loads(response.content)

    async def _request(self, method: str, key: str, **kwargs: Any) -> httpx.Response:
        url = f"{self.base_url}/internal/payloads/{key}"
        response = await request_retried(
            self.client, method, url, failure=PayloadStoreError, headers=self.headers, **kwargs
        )
        if response.status_code >= 400:
            raise PayloadStoreError(
                f"{method} {key}: drive answered {response.status_code} {response.text[:200]}"
            )
        return response

    async def aclose(self) -> None:
        await self.client.aclose()
