"""Deployments and skillpacks over the internal listener: versions, listing newest first,
activation as a rolling switch (a rollback is activating an older version), the active one
undeletable, skillpacks side by side, and one workspace never reaching another's."""

from __future__ import annotations

import uuid

from deployments_testlib import ECHO, Harness


async def test_versions_count_up_and_the_list_is_newest_first(harness: Harness) -> None:
    ws = uuid.uuid4()
    first = await harness.push(ws, ECHO, notes="one")
    assert first.status_code == 201, first.text
    assert (first.json()["version"], first.json()["status"], first.json()["active"]) == (
        1,
        "ready",
        True,
    )
    second = await harness.push(
        ws,
        {
            **ECHO,
            "skills/other/skill.yaml": "entrypoint: main.py:run\n",
            "skills/other/main.py": "def run(i):\n    return i\n",
        },
        notes="two",
    )
    assert second.json()["version"] == 2 and second.json()["active"]
    listing = (await harness.http.get(f"/internal/workspaces/{ws}/deployments")).json()
    assert [d["version"] for d in listing["data"]] == [2, 1]
    assert [d["active"] for d in listing["data"]] == [True, False]
    assert [s["name"] for s in listing["data"][0]["skills"]] == ["echo", "other"]
    assert listing["data"][1]["notes"] == "one" and listing["next_cursor"] is None
    page = (
        await harness.http.get(f"/internal/workspaces/{ws}/deployments", params={"limit": 1})
    ).json()
    assert [d["version"] for d in page["data"]] == [2] and page["next_cursor"] == "2"
    rest = (
        await harness.http.get(
            f"/internal/workspaces/{ws}/deployments", params={"limit": 1, "cursor": 2}
        )
    ).json()
    assert [d["version"] for d in rest["data"]] == [1] and rest["next_cursor"] is None


async def test_activation_is_a_switch_and_rollback_activates_an_older_version(
    harness: Harness,
) -> None:
    ws = uuid.uuid4()
    v1 = (await harness.push(ws, ECHO)).json()
    v2 = (await harness.push(ws, ECHO, activate=False)).json()
    assert v2["active"] is False
    url = f"/internal/workspaces/{ws}/deployments"
    assert (await harness.http.get(f"{url}/{v1['id']}")).json()["active"] is True

    switched = await harness.http.post(f"{url}/{v2['id']}/activate")
    assert switched.status_code == 200 and switched.json()["active"] is True
    rolled_back = await harness.http.post(f"{url}/{v1['id']}/activate")
    assert rolled_back.json()["active"] is True and rolled_back.json()["version"] == 1
    again = await harness.http.post(f"{url}/{v1['id']}/activate")
    assert again.status_code == 200  # already active: nothing changes

    activations = [
        e["payload"]
        for e in await harness.events("deployment.activated")
        if e["workspace_id"] == str(ws)
    ]
    assert [(a["version"], a["activation"]) for a in activations] == [(1, 1), (2, 2), (1, 3)]
    assert activations[2]["previous_deployment_id"] == v2["id"]


async def test_the_active_deployment_cannot_be_deleted_and_others_can(harness: Harness) -> None:
    ws = uuid.uuid4()
    v1 = (await harness.push(ws, ECHO)).json()
    v2 = (await harness.push(ws, ECHO)).json()
    url = f"/internal/workspaces/{ws}/deployments"
    refused = await harness.http.delete(f"{url}/{v2['id']}")
    assert refused.status_code == 409
    assert "active deployment of skillpack 'default'" in refused.json()["error"]["message"]

    deleted = await harness.http.delete(f"{url}/{v1['id']}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert (await harness.http.get(f"{url}/{v1['id']}")).status_code == 404
    assert [d["version"] for d in (await harness.http.get(url)).json()["data"]] == [2]
    assert (await harness.http.delete(f"{url}/{v1['id']}")).status_code == 404
    assert (await harness.http.post(f"{url}/{v1['id']}/activate")).status_code == 404
    deletions = [e["payload"]["deployment_id"] for e in await harness.events("deployment.deleted")]
    assert v1["id"] in deletions and v2["id"] not in deletions
    # Runners still get what jobs submitted before the delete need.
    assert (await harness.http.get(f"/internal/deployments/{v1['id']}")).status_code == 200


async def test_a_workspace_never_reaches_another_workspaces_deployments(harness: Harness) -> None:
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    mine = (await harness.push(owner, ECHO, activate=False)).json()
    for method, path in (
        ("GET", f"/internal/workspaces/{stranger}/deployments/{mine['id']}"),
        ("POST", f"/internal/workspaces/{stranger}/deployments/{mine['id']}/activate"),
        ("DELETE", f"/internal/workspaces/{stranger}/deployments/{mine['id']}"),
    ):
        response = await harness.http.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
    assert (await harness.http.get(f"/internal/workspaces/{stranger}/deployments")).json()[
        "data"
    ] == []


async def test_skillpacks_have_their_own_versions_pointer_and_visibility(harness: Harness) -> None:
    ws = uuid.uuid4()
    await harness.push(ws, ECHO)
    tools = (await harness.push(ws, ECHO, skillpack="tools")).json()
    tools2 = (await harness.push(ws, ECHO, skillpack="tools")).json()
    assert (tools["version"], tools2["version"], tools2["skillpack"]) == (1, 2, "tools")
    packs = (await harness.http.get(f"/internal/workspaces/{ws}/skillpacks")).json()["data"]
    assert [(p["slug"], p["active_version"], p["deployments"], p["visibility"]) for p in packs] == [
        ("default", 1, 1, "private"),
        ("tools", 2, 2, "private"),
    ]
    by_id = await harness.http.get(
        f"/internal/workspaces/{ws}/deployments", params={"skillpack": tools["skillpack_id"]}
    )
    assert [d["version"] for d in by_id.json()["data"]] == [2, 1]

    made_public = await harness.http.patch(
        f"/internal/workspaces/{ws}/skillpacks/tools", json={"visibility": "public"}
    )
    assert made_public.status_code == 200 and made_public.json()["visibility"] == "public"
    same = await harness.http.patch(
        f"/internal/workspaces/{ws}/skillpacks/tools", json={"visibility": "public"}
    )
    assert same.status_code == 200
    back = await harness.http.patch(
        f"/internal/workspaces/{ws}/skillpacks/{tools['skillpack_id']}",
        json={"visibility": "private"},
    )
    assert back.json()["visibility"] == "private"
    updates = [
        e["payload"]
        for e in await harness.events("deployment.skillpack_updated")
        if e["workspace_id"] == str(ws)
    ]
    assert [(u["visibility"], u["revision"]) for u in updates] == [("public", 1), ("private", 2)]

    bad = await harness.http.patch(
        f"/internal/workspaces/{ws}/skillpacks/tools", json={"visibility": "open"}
    )
    assert (
        bad.status_code == 400
        and bad.json()["error"]["details"][0]["pointer"] == "/body/visibility"
    )
    missing = await harness.http.patch(
        f"/internal/workspaces/{ws}/skillpacks/nope", json={"visibility": "public"}
    )
    assert missing.status_code == 404
    other = await harness.http.patch(
        f"/internal/workspaces/{uuid.uuid4()}/skillpacks/tools", json={"visibility": "public"}
    )
    assert other.status_code == 404


async def test_bad_skillpack_references_are_refused_with_the_rule(harness: Harness) -> None:
    ws = uuid.uuid4()
    pushed = await harness.push(ws, ECHO, skillpack="Not A Slug")
    assert (
        pushed.status_code == 400
        and pushed.json()["error"]["details"][0]["pointer"] == "/skillpack"
    )
    listed = await harness.http.get(
        f"/internal/workspaces/{ws}/deployments", params={"skillpack": "ghost"}
    )
    assert listed.status_code == 404 and "ghost" in listed.json()["error"]["message"]
    assert (await harness.http.get(f"/internal/workspaces/{ws}/deployments")).json() == {
        "data": [],
        "next_cursor": None,
    }
