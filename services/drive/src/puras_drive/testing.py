"""Test support: an S3-protocol server (moto's server mode) on a free loopback port.

Used by the drive's contract suite and by cross-service tests that run the platform on the S3
backend. moto is a development dependency; importing this module without it fails clearly.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from puras_common.engines import free_port


@dataclass(frozen=True)
class MotoS3:
    endpoint: str

    def env(self) -> dict[str, str]:
        """What a process needs to reach this server with the AWS SDK."""
        return {
            "AWS_ACCESS_KEY_ID": "puras-test",
            "AWS_SECRET_ACCESS_KEY": "puras-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PURAS_DRIVE_S3_ENDPOINT": self.endpoint,
        }


@contextlib.contextmanager
def start_moto() -> Iterator[MotoS3]:
    """moto's S3 in server mode, in a thread of this process, until the block ends."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield MotoS3(endpoint=f"http://127.0.0.1:{port}")
    finally:
        server.stop()
