"""An error answer becomes PurasAPIError with the API's code, and the wait a 429 asks for."""

from __future__ import annotations

import httpx
import pytest
from puras._http import check
from puras.errors import PurasAPIError


def test_a_rate_limited_answer_carries_its_retry_after() -> None:
    limited = httpx.Response(
        429,
        headers={"Retry-After": "7"},
        json={"error": {"code": "rate_limited", "message": "too many requests", "details": {}}},
    )
    with pytest.raises(PurasAPIError) as caught:
        check(limited)
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (
        429,
        "rate_limited",
        7,
    )


def test_other_errors_have_no_retry_after() -> None:
    with pytest.raises(PurasAPIError) as caught:
        check(httpx.Response(404, json={"error": {"code": "not_found", "message": "no job"}}))
    assert caught.value.retry_after is None
