"""The drive's public HTTP API, end to end: every endpoint and its limits at the edge, signed
links that refuse tampering, expiry and other workspaces, and job tokens as callers."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
import zipfile
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import pytest
from puras_common.tokens import mint_job_token
from puras_drive.signing import Signer
from puras_testing.drive import HOSTILE_PATHS, SAFE_FOLDS
from puras_testing.platform import Platform, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

MB50 = 52_428_800


async def upload(
    tenant: Tenant,
    data: bytes,
    *,
    name: str = "photo.png",
    path: str | None = None,
    content_type: str = "image/png",
    path_first: bool = False,
) -> httpx.Response:
    files = {"file": (name, data, content_type)}
    form = {"path": path} if path is not None else {}
    if path_first:
        # httpx writes data fields before files; the default order below puts the file first.
        return await tenant.http.post("/v1/drive/upload", data=form, files=files)
    fields = [("file", (name, data, content_type)), *(("path", (None, v)) for v in form.values())]
    return await tenant.http.post("/v1/drive/upload", files=fields)


async def anonymous_get(url: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(url, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def tenant(platform: Platform) -> Tenant:
    return await platform.tenant(f"drive-{uuid.uuid4().hex[:8]}")


async def test_upload_to_a_path_given_after_the_file_and_read_it_by_its_signed_url(
    tenant: Tenant,
) -> None:
    response = await upload(tenant, b"\x89PNG fake", path="pics/cat.png")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["drive_path"] == "pics/cat.png"
    assert body["full_path"] == f"{tenant.id}/pics/cat.png"
    assert body["bytes"] == 9 and body["content_type"] == "image/png"
    fetched = await anonymous_get(body["signed_url"])
    assert fetched.status_code == 200 and fetched.content == b"\x89PNG fake"
    assert fetched.headers["content-type"] == "image/png"


async def test_an_empty_or_folder_path_gets_a_generated_name(tenant: Tenant) -> None:
    generated = (await upload(tenant, b"a", name="shot.JPG", content_type="image/jpeg")).json()
    assert generated["drive_path"].startswith("uploads/") and generated["drive_path"].endswith(
        ".jpg"
    )
    uuid.UUID(generated["drive_path"][len("uploads/") : -len(".jpg")])
    into = (
        await upload(
            tenant, b"b", name="x.txt", content_type="text/plain", path="notes/", path_first=True
        )
    ).json()
    assert into["drive_path"].startswith("notes/") and into["drive_path"].endswith(".txt")
    # A name without an extension that is already a folder is a folder too.
    again = (
        await upload(tenant, b"c", name="y.txt", content_type="text/plain", path="notes")
    ).json()
    assert again["drive_path"].startswith("notes/") and again["drive_path"] != into["drive_path"]


async def test_exactly_50_mb_uploads_and_one_byte_more_is_refused_with_nothing_stored(
    tenant: Tenant,
) -> None:
    edge = await upload(
        tenant,
        b"\0" * MB50,
        name="edge.bin",
        path="big/edge.bin",
        content_type="application/octet-stream",
    )
    assert edge.status_code == 201, edge.text
    assert edge.json()["bytes"] == MB50
    over = await upload(
        tenant,
        b"\0" * (MB50 + 1),
        name="over.bin",
        path="big/over.bin",
        content_type="application/octet-stream",
    )
    assert over.status_code == 413, over.text
    assert over.json()["error"]["code"] == "payload_too_large"
    assert "52428800 bytes" in over.json()["error"]["message"]
    listing = (await tenant.http.get("/v1/drive/list", params={"prefix": "big/"})).json()
    assert [f["name"] for f in listing["files"]] == ["edge.bin"]


async def test_a_declared_body_far_over_the_limit_is_refused_before_it_is_read(
    tenant: Tenant,
) -> None:
    # A raw request: it declares 500 MB and sends only its first line of the body.
    url = urlsplit(str(tenant.http.base_url))
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    head = (
        f"POST /v1/drive/upload HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {tenant.api_key}\r\n"
        f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {10 * MB50}\r\n\r\n--x\r\n"
    )
    writer.write(head.encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.split()[1] == b"413", status_line


async def test_bad_uploads_say_what_is_wrong(tenant: Tenant) -> None:
    no_file = await tenant.http.post("/v1/drive/upload", files=[("path", (None, "a.txt"))])
    assert no_file.status_code == 400 and "'file'" in no_file.json()["error"]["message"]
    not_multipart = await tenant.http.post("/v1/drive/upload", content=b"raw")
    assert (
        not_multipart.status_code == 400 and "multipart" in not_multipart.json()["error"]["message"]
    )
    unauthenticated = await anonymous_get(str(tenant.http.base_url) + "/v1/drive/list")
    assert unauthenticated.status_code == 401


async def test_list_shows_direct_children_only(tenant: Tenant) -> None:
    for path in ("l/a.txt", "l/b.json", "l/sub/c.txt", "l/sub/deeper/d.txt", "other.txt"):
        assert (
            await upload(
                tenant,
                b"{}",
                name=path.rsplit("/", 1)[-1],
                path=path,
                content_type="application/octet-stream",
            )
        ).status_code == 201
    listing = (await tenant.http.get("/v1/drive/list", params={"prefix": "l"})).json()
    assert listing["prefix"] == "l/"
    assert listing["folders"] == ["sub"]
    files = {f["name"]: f for f in listing["files"]}
    assert set(files) == {"a.txt", "b.json"}
    assert (
        files["b.json"]["path"] == "l/b.json"
        and files["b.json"]["content_type"] == "application/json"
    )
    assert files["a.txt"]["bytes"] == 2 and files["a.txt"]["updated_at"].endswith("Z")
    root = (await tenant.http.get("/v1/drive/list")).json()
    assert "l" in root["folders"] and "other.txt" in [f["name"] for f in root["files"]]


async def test_sign_ttl_is_checked_at_its_edges(tenant: Tenant) -> None:
    await upload(tenant, b"x", path="s/f.txt", content_type="text/plain")
    for ttl, status in (
        (29, 400),
        (30, 200),
        (2_592_000, 200),
        (2_678_400, 400),
        (0, 400),
        (-5, 400),
    ):
        response = await tenant.http.get("/v1/drive/sign", params={"path": "s/f.txt", "ttl": ttl})
        assert response.status_code == status, (ttl, response.text)
        if status == 200:
            assert response.json()["expires_in"] == ttl
        else:
            assert "ttl" in response.json()["error"]["message"]
    default = (await tenant.http.get("/v1/drive/sign", params={"path": "s/f.txt"})).json()
    assert default["path"] == "s/f.txt" and default["expires_in"] == 3600
    assert (await anonymous_get(default["signed_url"])).content == b"x"
    missing = await tenant.http.get("/v1/drive/sign", params={"path": "s/missing.txt"})
    assert missing.status_code == 404
    no_path = await tenant.http.get("/v1/drive/sign")
    assert no_path.status_code == 400


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return urlunsplit(parts._replace(query="&".join(f"{k}={v}" for k, v in query.items())))


async def test_signed_links_refuse_tampering_expiry_and_other_workspaces(
    platform: Platform, tenant: Tenant
) -> None:
    other = await platform.tenant(f"drive-other-{uuid.uuid4().hex[:6]}")
    await upload(tenant, b"mine", path="t/secret.txt", content_type="text/plain")
    await upload(other, b"theirs", path="t/secret.txt", content_type="text/plain")
    link = (await tenant.http.get("/v1/drive/sign", params={"path": "t/secret.txt"})).json()[
        "signed_url"
    ]
    assert (await anonymous_get(link)).content == b"mine"
    sig = parse_qs(urlsplit(link).query)["sig"][0]
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    exp = int(parse_qs(urlsplit(link).query)["exp"][0])
    tampered = [
        _with_query(link, sig=flipped),
        _with_query(link, exp=str(exp + 86400)),
        _with_query(link, kid="0000000000"),
        link.replace("/t/secret.txt", "/t/other.txt"),
        link.replace(tenant.id, other.id),  # the same path in another workspace
        link.split("?")[0],
    ]
    for url in tampered:
        refused = await anonymous_get(url)
        assert refused.status_code == 403, (url, refused.text)
        assert refused.json()["error"]["code"] == "forbidden"
    signer = Signer(platform.config.credentials.drive_signing_key, base_url=platform.url)
    expired = signer.sign(uuid.UUID(tenant.id), "t/secret.txt", ttl=30, now=time.time() - 60).url
    refused = await anonymous_get(expired)
    assert refused.status_code == 403 and "expired" in refused.json()["error"]["message"]
    # The platform's own key, the right path and time, but a link minted for another workspace.
    crossed = signer.sign(uuid.UUID(other.id), "t/secret.txt", ttl=60).url.replace(
        other.id, tenant.id
    )
    assert (await anonymous_get(crossed)).status_code == 403


async def test_signed_links_serve_byte_ranges(tenant: Tenant) -> None:
    body = (
        await upload(tenant, b"0123456789", path="r/digits.txt", content_type="text/plain")
    ).json()
    partial = await anonymous_get(body["signed_url"], headers={"Range": "bytes=2-4"})
    assert partial.status_code == 206 and partial.content == b"234"
    assert partial.headers["content-range"] == "bytes 2-4/10"


async def test_delete_a_file_a_folder_and_an_extensionless_folder(tenant: Tenant) -> None:
    for path in ("d/one.txt", "d/two/a.txt", "d/two/b.txt", "d/three/c.txt", "keep.txt"):
        await upload(tenant, b".", path=path, content_type="text/plain")
    one = await tenant.http.delete("/v1/drive/object", params={"path": "d/one.txt"})
    assert one.status_code == 200 and one.json() == {"deleted": 1}
    assert (await tenant.http.delete("/v1/drive/object", params={"path": "d/two/"})).json() == {
        "deleted": 2
    }
    assert (await tenant.http.delete("/v1/drive/object", params={"path": "d/three"})).json() == {
        "deleted": 1
    }
    assert (await tenant.http.delete("/v1/drive/object", params={"path": "d/none.txt"})).json() == {
        "deleted": 0
    }
    root = (await tenant.http.get("/v1/drive/list")).json()
    assert "d" not in root["folders"] and "keep.txt" in [f["name"] for f in root["files"]]
    refused = await tenant.http.delete("/v1/drive/object", params={"path": ""})
    assert refused.status_code == 400


async def test_zip_streams_a_prefix_under_its_last_segment(tenant: Tenant) -> None:
    files = {
        "z/renders/a.txt": b"alpha " * 100,
        "z/renders/sub/b.png": b"\x89PNG..",
        "z/elsewhere.txt": b"no",
    }
    for path, data in files.items():
        await upload(tenant, data, path=path, content_type="application/octet-stream")
    response = await tenant.http.get("/v1/drive/zip", params={"prefix": "z/renders"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert "renders.zip" in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == ["renders/a.txt", "renders/sub/b.png"]
    assert archive.read("renders/a.txt") == files["z/renders/a.txt"]
    assert archive.testzip() is None


async def test_origin_is_null_for_uploads_and_share_links_last_ten_years(tenant: Tenant) -> None:
    await upload(tenant, b"o", path="o/up.txt", content_type="text/plain")
    origin = (await tenant.http.get("/v1/drive/origin", params={"path": "o/up.txt"})).json()
    assert origin == {"job_id": None, "skill_name": None, "tool": None, "created_at": None}
    shared = await tenant.http.post("/v1/drive/share", params={"path": "o/up.txt"})
    assert shared.status_code == 200, shared.text
    body = shared.json()
    assert int(body["expires_at"][:4]) - time.gmtime().tm_year in (9, 10)
    assert (await anonymous_get(body["url"])).content == b"o"
    assert (
        await tenant.http.post("/v1/drive/share", params={"path": "o/none.txt"})
    ).status_code == 404


async def test_a_job_token_is_a_caller_for_its_own_workspace_only(
    platform: Platform, tenant: Tenant
) -> None:
    await upload(tenant, b"j", path="j/file.txt", content_type="text/plain")
    key = platform.config.credentials.job_token_key
    token = mint_job_token(
        key,
        workspace_id=uuid.UUID(tenant.id),
        job_id=uuid.uuid4(),
        skillpack_id=uuid.uuid4(),
        attempt=1,
        ttl_seconds=60,
    )
    async with httpx.AsyncClient(
        base_url=platform.url, headers={"Authorization": f"Bearer {token}"}
    ) as job:
        signed = await job.get("/v1/drive/sign", params={"path": f"{tenant.id}/j/file.txt"})
        assert signed.status_code == 200, signed.text
        assert signed.json()["path"] == "j/file.txt"
    forged = mint_job_token(
        "not-the-key",
        workspace_id=uuid.UUID(tenant.id),
        job_id=uuid.uuid4(),
        skillpack_id=uuid.uuid4(),
        attempt=1,
        ttl_seconds=60,
    )
    expired = mint_job_token(
        key,
        workspace_id=uuid.UUID(tenant.id),
        job_id=uuid.uuid4(),
        skillpack_id=uuid.uuid4(),
        attempt=1,
        ttl_seconds=-1,
    )
    for bad in (forged, expired, "pjt_garbage"):
        async with httpx.AsyncClient(
            base_url=platform.url, headers={"Authorization": f"Bearer {bad}"}
        ) as job:
            assert (await job.get("/v1/drive/list")).status_code == 401


async def test_the_traversal_corpus_never_leaves_the_workspace_over_http(
    platform: Platform, tenant: Tenant
) -> None:
    drive_root = platform.config.home / "drive"
    before = {p for p in drive_root.rglob("*") if not p.is_relative_to(drive_root / tenant.id)}
    for raw in HOSTILE_PATHS:
        uploaded = await upload(
            tenant, b"hostile", path=raw, name="h.txt", content_type="text/plain"
        )
        if raw in SAFE_FOLDS or (raw in ("", ".", "./") and uploaded.status_code == 201):
            continue  # an odd but harmless name, or the root: a generated name under uploads/
        assert uploaded.status_code in (400, 413), (raw, uploaded.text)
        for method, route in (
            ("GET", "/v1/drive/sign"),
            ("GET", "/v1/drive/origin"),
            ("DELETE", "/v1/drive/object"),
        ):
            answered = await tenant.http.request(method, route, params={"path": raw})
            assert answered.status_code in (400, 404), (raw, route, answered.text)
        listed = await tenant.http.get("/v1/drive/list", params={"prefix": raw})
        assert listed.status_code == 400 or listed.json()["files"] == [], (raw, listed.text)
    after = {p for p in drive_root.rglob("*") if not p.is_relative_to(drive_root / tenant.id)}
    assert {p for p in after - before if not p.is_relative_to(drive_root / "_tmp")} == set()
    assert list((drive_root / "_tmp").iterdir()) == []  # refused uploads leave no spool behind


async def test_a_publishable_key_may_upload_but_not_read_the_drive(
    platform: Platform, tenant: Tenant, admin_db
) -> None:  # type: ignore[no-untyped-def]
    from puras_gateway import keys

    minted = keys.mint("publishable")
    await admin_db.execute(
        "INSERT INTO gateway.api_keys (id, workspace_id, kind, prefix, secret_sha256) VALUES ($1, $2, 'publishable', $3, $4)",
        uuid.uuid4(),
        uuid.UUID(tenant.id),
        minted.prefix,
        minted.secret_sha256,
    )
    async with httpx.AsyncClient(
        base_url=platform.url, headers={"Authorization": f"Bearer {minted.token}"}
    ) as browser:
        uploaded = await browser.post(
            "/v1/drive/upload", files={"file": ("p.png", b"png", "image/png")}
        )
        assert uploaded.status_code == 201, uploaded.text
        for method, route, params in (
            ("GET", "/v1/drive/list", {}),
            ("GET", "/v1/drive/sign", {"path": uploaded.json()["drive_path"]}),
            ("DELETE", "/v1/drive/object", {"path": uploaded.json()["drive_path"]}),
            ("GET", "/v1/drive/zip", {}),
            ("GET", "/v1/drive/quota", {}),
        ):
            refused = await browser.request(method, route, params=params)
            assert (
                refused.status_code == 403 and "publishable" in refused.json()["error"]["message"]
            ), route
