"""``puras keys create|list|revoke``: the workspace's API keys. A new key is printed once."""

from __future__ import annotations

import argparse
import sys
from typing import Any

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


@command
def cmd_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "kind": "publishable" if args.publishable else "secret",
        "name": args.name,
    }
    if args.skillpack:
        body["skillpack"] = args.skillpack
    if args.allow:
        body["allowed_skills"] = args.allow
    if args.daily_cap_usd is not None:
        from puras_common.money import usd_to_micros  # pydantic: imported only when used

        try:
            body["daily_cap_micros"] = usd_to_micros(args.daily_cap_usd)
        except ValueError as exc:
            raise CommandError(
                f"--daily-cap-usd {args.daily_cap_usd!r}: {exc}", Exit.USAGE
            ) from None
    key = call(args, "POST", "/v1/keys", json=body)

    def human(k: dict[str, Any]) -> None:
        print(f"{k['kind']} key {k['prefix']} ({k['id']})")
        print(k["api_key"])
        print("The key is shown once; store it now.", file=sys.stderr)

    emit(args, key, human)
    return Exit.OK


@command
def cmd_list(args: argparse.Namespace) -> int:
    from puras_common.money import format_usd

    page = call(args, "GET", "/v1/keys", params={"limit": args.limit})
    emit(
        args,
        page,
        lambda p: table(
            [
                (
                    k["id"],
                    k["prefix"],
                    k["kind"],
                    k["name"],
                    ",".join(k["allowed_skills"]) if k["allowed_skills"] else "*",
                    ""
                    if k["daily_cap_micros"] is None
                    else f"${format_usd(k['daily_cap_micros'])}",
                    "revoked" if k["revoked_at"] else "active",
                )
                for k in p["data"]
            ],
            ("ID", "PREFIX", "KIND", "NAME", "SKILLS", "DAILY_CAP", "STATE"),
        ),
    )
    return Exit.OK


@command
def cmd_revoke(args: argparse.Namespace) -> int:
    with client_of(args) as client:
        key_id = args.key
        if key_id.startswith(("puras_live_", "puras_pub_")):
            prefix = key_id.split(".", 1)[0]
            page = client.request("GET", "/v1/keys", params={"limit": 200})
            matches = [k["id"] for k in page["data"] if k["prefix"] == prefix]
            if not matches:
                raise CommandError(f"no key with prefix {prefix}", Exit.API_ERROR, name="not_found")
            key_id = matches[0]
        key = client.request("DELETE", api_path("/v1/keys/{}", key_id))
    emit(args, key, lambda k: print(f"key {k['prefix']} revoked at {k['revoked_at']}"))
    return Exit.OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="the workspace's API keys").add_subparsers(
        dest="keys", required=True
    )
    p = leaf(keys, "create", cmd_create, "mint a key (shown once)")
    p.add_argument("--publishable", action="store_true", help="a puras_pub_ key for apps")
    p.add_argument("--name", default="")
    p.add_argument("--skillpack", help="its default skillpack")
    p.add_argument("--allow", action="append", metavar="SKILL", help="a skill it may run (repeat)")
    p.add_argument("--daily-cap-usd", help="its spend cap per UTC day, e.g. 5 or 0.25")
    p = leaf(keys, "list", cmd_list, "keys, newest first (prefixes only)")
    p.add_argument("--limit", type=int, default=25)
    p = leaf(keys, "revoke", cmd_revoke, "revoke a key by id or by its prefix")
    p.add_argument("key", help="key id, or puras_live_XXXXXXXX / puras_pub_XXXXXXXX")
