"""``puras secrets set|list|rm``: a skillpack's secrets. Values are only ever written; ``set``
reads the value from standard input when it is not given, so it stays out of shell history."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from puras._paths import api_path

from puras_cli.commands.output import (
    CommandError,
    Exit,
    call,
    command,
    emit,
    leaf,
    table,
)


def _params(args: argparse.Namespace) -> dict[str, Any] | None:
    return {"skillpack": args.skillpack} if args.skillpack else None


@command
def cmd_set(args: argparse.Namespace) -> int:
    value = args.value
    if value is None or value == "-":
        value = sys.stdin.read().removesuffix("\n")
    if not value:
        raise CommandError("no value: pass it after the name or on standard input", Exit.USAGE)
    answer = call(
        args,
        "PUT",
        api_path("/v1/secrets/{}", args.name),
        params=_params(args),
        json={"value": value},
    )
    emit(args, answer, lambda a: print(f"secret {a.get('name', args.name)} set"))
    return Exit.OK


@command
def cmd_list(args: argparse.Namespace) -> int:
    answer = call(args, "GET", "/v1/secrets", params=_params(args))
    emit(
        args,
        answer,
        lambda a: table([(s["name"], s["updated_at"]) for s in a["data"]], ("NAME", "UPDATED")),
    )
    return Exit.OK


@command
def cmd_rm(args: argparse.Namespace) -> int:
    answer = call(args, "DELETE", api_path("/v1/secrets/{}", args.name), params=_params(args))
    emit(args, answer, lambda _: print(f"secret {args.name} deleted"))
    return Exit.OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    secrets = sub.add_parser("secrets", help="a skillpack's secrets").add_subparsers(
        dest="secrets", required=True
    )
    p = leaf(secrets, "set", cmd_set, "create or overwrite (value from stdin if omitted)")
    p.add_argument("name", help="^[A-Z_][A-Z0-9_]*$")
    p.add_argument("value", nargs="?")
    p.add_argument("--skillpack")
    p = leaf(secrets, "list", cmd_list, "names only; values are never returned")
    p.add_argument("--skillpack")
    p = leaf(secrets, "rm", cmd_rm, "delete a secret")
    p.add_argument("name")
    p.add_argument("--skillpack")
