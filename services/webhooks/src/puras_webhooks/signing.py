"""Standard Webhooks signatures (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).

Each endpoint has a secret (``whsec_`` + base64 of 32 random bytes). After a rotation the
previous secret keeps signing beside the new one for a while: the signature header then holds
both (``v1,<new> v1,<old>``), and a receiver that knows either accepts the message.
"""

from __future__ import annotations

import base64
import os
from datetime import datetime
from typing import Final

from standardwebhooks import Webhook

PREFIX: Final = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(os.urandom(32)).decode()


def headers(
    *, message_id: str, timestamp: datetime, body: str, secrets: list[str]
) -> dict[str, str]:
    """The three headers of one attempt, signed with every secret in ``secrets``."""
    signatures = [Webhook(s).sign(message_id, timestamp, body) for s in secrets]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
