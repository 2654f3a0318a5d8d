"""API keys and skill addresses."""

from __future__ import annotations

import hashlib

import pytest
from puras_common.api import ApiError
from puras_gateway import keys
from puras_gateway.catalog import Address, parse_address


def test_minted_keys_have_the_documented_shape_and_parse_back() -> None:
    for kind, prefix in (("secret", "puras_live_"), ("publishable", "puras_pub_")):
        minted = keys.mint(kind)  # type: ignore[arg-type]
        assert minted.token.startswith(prefix)
        parsed = keys.parse(minted.token)
        assert parsed is not None and parsed.kind == kind and parsed.prefix == minted.prefix
        assert hashlib.sha256(parsed.secret.encode()).digest() == minted.secret_sha256
        assert keys.secret_matches(parsed.secret, minted.secret_sha256)
        other = "y" if parsed.secret[-1] == "x" else "x"
        assert not keys.secret_matches(parsed.secret[:-1] + other, minted.secret_sha256)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "puras_live_abcdefgh",
        "puras_live_abcdefghSECRETSECRETSECRETSECRETSECRETSE",
        "puras_test_abcdefgh." + "a" * 32,
        "puras_live_abcdefg." + "a" * 32,
        "puras_live_abcdefgh." + "a" * 31,
        "puras_live_abcdefgh." + "a" * 31 + "!",
    ],
)
def test_malformed_keys_do_not_parse(token: str) -> None:
    assert keys.parse(token) is None


def test_an_unknown_prefix_never_matches() -> None:
    assert keys.secret_matches("anything", None) is False


@pytest.mark.parametrize(
    ("skill", "skillpack", "expected"),
    [
        ("echo", None, Address(None, None, "echo")),
        ("echo", "tools", Address(None, "tools", "echo")),
        ("echo", "acme/tools", Address("acme", "tools", "echo")),
        ("tools/echo", "ignored", Address(None, "tools", "echo")),
        ("acme/tools/echo", None, Address("acme", "tools", "echo")),
    ],
)
def test_skill_addresses(skill: str, skillpack: str | None, expected: Address) -> None:
    assert parse_address(skill, skillpack=skillpack) == expected


@pytest.mark.parametrize("skill", ["a/b/c/d", "/echo", "tools//echo", "Echo", "ec ho"])
def test_bad_addresses_are_400(skill: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_address(skill, skillpack=None)
    assert info.value.status == 400
