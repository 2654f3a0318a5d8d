"""``puras deployments list|activate|promote|rollback|delete``: a skillpack's versions.
``activate --traffic N`` ramps a deployment up to N % of the traffic and ``promote`` gives it
all of it. A rollback ends a ramp, or else activates the newest ready deployment older than the
active one."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import puras
from puras._paths import api_path

from puras_cli.commands.output import (
    CommandError,
    Exit,
    call,
    client_of,
    command,
    emit,
    leaf,
    table,
)


def _all(client: puras.Client, skillpack: str | None) -> Iterator[dict[str, Any]]:
    params: dict[str, Any] = {"limit": 200}
    if skillpack:
        params["skillpack"] = skillpack
    while True:
        page = client.request("GET", "/v1/deployments", params=params)
        yield from page["data"]
        if not page.get("next_cursor"):
            return
        params["cursor"] = page["next_cursor"]


def _show(d: dict[str, Any]) -> None:
    state = "active" if d["active"] else d["status"]
    share = d.get("traffic_percent")
    traffic = f", {share} % of traffic" if share not in (None, 0, 100) else ""
    print(f"deployment {d['id']}: {d['skillpack']} v{d['version']} ({state}{traffic})")


@command
def cmd_list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.skillpack:
        params["skillpack"] = args.skillpack
    page = call(args, "GET", "/v1/deployments", params=params)
    emit(
        args,
        page,
        lambda p: table(
            [
                (
                    d["id"],
                    d["version"],
                    "*" if d["active"] else "",
                    d["status"],
                    ",".join(s["name"] for s in d["skills"]),
                    d["created_at"],
                    d["notes"],
                )
                for d in p["data"]
            ],
            ("ID", "VERSION", "ACTIVE", "STATUS", "SKILLS", "CREATED", "NOTES"),
        ),
    )
    return Exit.OK


@command
def cmd_activate(args: argparse.Namespace) -> int:
    body = {"traffic_percent": args.traffic} if args.traffic is not None else None
    deployment = call(
        args, "POST", api_path("/v1/deployments/{}/activate", args.deployment_id), json=body
    )
    emit(args, deployment, _show)
    return Exit.OK


@command
def cmd_promote(args: argparse.Namespace) -> int:
    deployment = call(args, "POST", api_path("/v1/deployments/{}/promote", args.deployment_id))
    emit(args, deployment, _show)
    return Exit.OK


@command
def cmd_rollback(args: argparse.Namespace) -> int:
    with client_of(args) as client:
        deployments = list(_all(client, args.skillpack))
        ramping = next(
            (d for d in deployments if not d["active"] and d.get("traffic_percent")), None
        )
        if ramping is not None:  # a ramp in progress: it gives its share back
            deployment = client.request(
                "POST", api_path("/v1/deployments/{}/rollback", ramping["id"])
            )
            emit(args, deployment, _show)
            return Exit.OK
        active = next((d for d in deployments if d["active"]), None)
        if active is None:
            raise CommandError(
                "the skillpack has no active deployment", Exit.API_ERROR, name="conflict"
            )
        earlier = [
            d for d in deployments if d["version"] < active["version"] and d["status"] == "ready"
        ]
        if not earlier:
            raise CommandError(
                f"no ready deployment older than v{active['version']} to roll back to",
                Exit.API_ERROR,
                name="conflict",
            )
        target = max(earlier, key=lambda d: d["version"])
        deployment = client.request("POST", api_path("/v1/deployments/{}/activate", target["id"]))

    def human(d: dict[str, Any]) -> None:
        _show(d)
        print(f"rolled back from v{active['version']}")

    emit(args, deployment, human)
    return Exit.OK


@command
def cmd_delete(args: argparse.Namespace) -> int:
    answer = call(args, "DELETE", api_path("/v1/deployments/{}", args.deployment_id))
    emit(args, answer, lambda _: print(f"deleted deployment {args.deployment_id}"))
    return Exit.OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deployments = sub.add_parser(
        "deployments", help="list, activate, roll back, delete"
    ).add_subparsers(dest="deployments", required=True)
    p = leaf(deployments, "list", cmd_list, "a skillpack's deployments, newest first")
    p.add_argument("--skillpack")
    p.add_argument("--limit", type=int, default=25)
    p = leaf(
        deployments,
        "activate",
        cmd_activate,
        "make a ready deployment the active one (--traffic N: ramp it up to N %)",
    )
    p.add_argument("deployment_id")
    p.add_argument("--traffic", type=int, metavar="PERCENT", help="1-100: ramp up to this share")
    p = leaf(deployments, "promote", cmd_promote, "give a ramping deployment all the traffic")
    p.add_argument("deployment_id")
    p = leaf(deployments, "rollback", cmd_rollback, "activate the version before the active one")
    p.add_argument("--skillpack")
    p = leaf(deployments, "delete", cmd_delete, "delete a deployment that is not active")
    p.add_argument("deployment_id")
