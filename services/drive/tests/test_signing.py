"""Signed links: every signed field matters, expiry is enforced, and rotating the key revokes
(or, with the old key kept as retired, preserves) the links it signed."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from puras_drive.signing import (
    SHARE_TTL_SECONDS,
    SignatureRefused,
    Signer,
    TtlOutOfRange,
    check_ttl,
)

WS = uuid.uuid4()
NOW = 1_800_000_000


def parts(url: str) -> tuple[uuid.UUID, str, dict[str, str]]:
    split = urlsplit(url)
    _, _, _, _, ws, path = split.path.split("/", 5)
    return uuid.UUID(ws), unquote(path), {k: v[0] for k, v in parse_qs(split.query).items()}


def verify(signer: Signer, url: str, *, now: int = NOW, **override: object) -> None:
    ws, path, q = parts(url)
    args = {"workspace_id": ws, "path": path, **q, **override}
    signer.verify(args.pop("workspace_id"), args.pop("path"), now=now, **args)  # type: ignore[arg-type]


def test_a_link_verifies_for_exactly_what_was_signed() -> None:
    signer = Signer("k1", base_url="https://api.example")
    url = signer.sign(WS, "a b/ü.png", ttl=60, now=NOW).url
    assert url.startswith(
        f"https://api.example/v1/drive/files/{WS}/a%20b/%C3%BC.png?exp={NOW + 60}&kid="
    )
    verify(signer, url)
    for change in (
        {"workspace_id": uuid.uuid4()},
        {"path": "a b/u.png"},
        {"exp": str(NOW + 61)},
        {"method": "DELETE"},
    ):
        with pytest.raises(SignatureRefused):
            verify(signer, url, **change)
    with pytest.raises(SignatureRefused, match="expired 1 s ago"):
        verify(signer, url, now=NOW + 61)
    for missing in ({"sig": None}, {"exp": "soon"}, {"kid": None}, {"sig": "é"}):
        with pytest.raises(SignatureRefused):
            verify(signer, url, **missing)


def test_rotation_revokes_old_links_unless_the_old_key_is_kept_as_retired() -> None:
    old = Signer("k1", base_url="http://x")
    shared = old.sign(WS, "f.txt", ttl=SHARE_TTL_SECONDS, now=NOW).url
    with pytest.raises(SignatureRefused, match="rotated"):
        verify(Signer("k2", base_url="http://x"), shared)
    keeping = Signer("k2", retired=["k1"], base_url="http://x")
    verify(keeping, shared, now=NOW + SHARE_TTL_SECONDS - 1)
    assert (
        parts(keeping.sign(WS, "f.txt", ttl=60, now=NOW).url)[2]["kid"] != parts(shared)[2]["kid"]
    )


@pytest.mark.parametrize(
    ("ttl", "ok"),
    [
        (29, False),
        (30, True),
        (3600, True),
        (2_592_000, True),
        (2_592_001, False),
        (2_678_400, False),
    ],
)
def test_ttl_edges(ttl: int, ok: bool) -> None:
    if ok:
        assert check_ttl(ttl) == ttl
    else:
        with pytest.raises(TtlOutOfRange, match=f"ttl={ttl}"):
            check_ttl(ttl)


def test_links_may_have_an_origin_of_their_own() -> None:
    from puras_drive.settings import DriveSettings

    api = "https://api.example.com"
    assert DriveSettings(public_url=api).links_base == api
    separate = DriveSettings(public_url=api, links_url="https://files.example.com/")
    assert separate.links_base == "https://files.example.com"
    link = Signer("k", base_url=separate.links_base).sign(WS, "a.png", ttl=60, now=NOW).url
    assert link.startswith(f"https://files.example.com/v1/drive/files/{WS}/a.png?")
