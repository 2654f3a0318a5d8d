"""Drive test fixtures: an S3-protocol server (moto in server mode) on a free loopback port."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from puras_testing.drive import MotoS3, start_moto


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3]:
    with start_moto() as server:
        yield server


@pytest.fixture
def s3_env(s3_server: MotoS3, monkeypatch: pytest.MonkeyPatch) -> MotoS3:
    """The AWS credentials botocore reads, pointed at the test server."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    assert os.environ["AWS_ACCESS_KEY_ID"]
    return s3_server
