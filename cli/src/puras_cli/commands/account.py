"""``puras login`` (the same configuration the MCP server uses) and ``puras balance``."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

import puras

from puras_cli import config
from puras_cli.commands.output import CommandError, Exit, call, command, emit, leaf


def check_key(api_base: str, api_key: str) -> dict[str, Any]:
    """The workspace's balance, proving the key works against that API (a secret key)."""
    with puras.Client(api_key=api_key, api_base=api_base) as client:
        balance: dict[str, Any] = client.request("GET", "/v1/balance")
    return balance


@command
def cmd_login(args: argparse.Namespace) -> int:
    saved = config.load_saved()
    base = (
        args.api_base
        or os.environ.get("PURAS_API_BASE")
        or (saved.api_base if saved else None)
        or config.DEFAULT_API_BASE
    ).rstrip("/")
    key = args.api_key or os.environ.get("PURAS_API_KEY")
    if not key:
        if not sys.stdin.isatty():
            key = sys.stdin.readline().strip()
        else:
            key = getpass.getpass("API key (puras_live_…): ").strip()
    if not key:
        raise CommandError("no API key given", Exit.USAGE)
    balance = check_key(base, key)
    stored = config.Config(api_base=base, api_key=key, workspace=balance["workspace"])
    path = config.save(stored)
    emit(
        args,
        {
            "api_base": base,
            "workspace": stored.workspace,
            "key_prefix": stored.key_prefix,
            "config": str(path),
        },
        lambda c: print(
            f"logged in to {c['api_base']} as workspace {c['workspace']} (key {c['key_prefix']}); saved in {c['config']}"
        ),
    )
    return Exit.OK


@command
def cmd_balance(args: argparse.Namespace) -> int:
    from puras_common.money import format_usd  # pydantic: imported only when used

    balance = call(args, "GET", "/v1/balance")
    emit(
        args,
        balance,
        lambda b: print(
            f"{b['workspace']}: ${format_usd(b['balance_micros'])} ({b['balance_micros']} micros)"
            + (
                f", {b['pending_grants_micros']} micros of grants pending"
                if b["pending_grants_micros"]
                else ""
            )
        ),
    )
    return Exit.OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    leaf(sub, "login", cmd_login, "store the API base and a secret key for these and `puras mcp`")
    leaf(sub, "balance", cmd_balance, "the workspace's credit")
