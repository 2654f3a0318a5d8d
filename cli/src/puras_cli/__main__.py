"""The ``puras`` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import httpx

from puras_cli.bundles import zip_project
from puras_cli.home import Home


def _gateway_url(home: Home) -> str:
    if url := os.environ.get("PURAS_API_BASE"):
        return url.rstrip("/")
    ports = (home.path / "ports.json")
    if ports.exists():
        import orjson

        return f"http://127.0.0.1:{orjson.loads(ports.read_bytes())['gateway']}"
    return "http://127.0.0.1:8080"


def _admin_token(home: Home) -> str:
    return os.environ.get("PURAS_ADMIN_TOKEN") or home.credentials().admin_token


def _fail(response: httpx.Response) -> int:
    print(f"error: {response.status_code} {response.text}", file=sys.stderr)
    return 1


def cmd_up(args: argparse.Namespace) -> int:
    from puras_cli.up import up

    examples = None if args.no_examples else Path(args.examples)
    try:
        import uvloop

        return uvloop.run(up(examples=examples))
    except ImportError:
        return asyncio.run(up(examples=examples))


def cmd_create_workspace(args: argparse.Namespace) -> int:
    home = Home()
    body = {"slug": args.name, "name": args.display_name or args.name}
    if args.credit_usd is not None:
        body["credit_usd"] = args.credit_usd
    response = httpx.post(
        f"{_gateway_url(home)}/v1/admin/workspaces",
        json=body,
        headers={"Authorization": f"Bearer {_admin_token(home)}"},
        timeout=30,
    )
    if response.status_code != 201:
        return _fail(response)
    created = response.json()
    print(f"workspace {created['workspace']['slug']} ({created['workspace']['id']})")
    print(f"credit    {created['credit_micros']} micros")
    print(f"API key   {created['api_key']}")
    print("The key is shown once; store it now.", file=sys.stderr)
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    home = Home()
    response = httpx.post(
        f"{_gateway_url(home)}/v1/admin/workspaces/{args.workspace}/grants",
        json={"usd": args.usd, "note": args.note},
        headers={"Authorization": f"Bearer {_admin_token(home)}"},
        timeout=30,
    )
    if response.status_code != 202:
        return _fail(response)
    print(f"granted {response.json()['amount_micros']} micros to {args.workspace}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    home = Home()
    key = args.api_key or os.environ.get("PURAS_API_KEY") or home.local().get("api_key")
    if not key:
        print("error: no API key (--api-key, PURAS_API_KEY, or run `puras up` first)", file=sys.stderr)
        return 1
    data = {"notes": args.notes, "activate": "false" if args.no_activate else "true"}
    if args.skillpack:
        data["skillpack"] = args.skillpack
    response = httpx.post(
        f"{_gateway_url(home)}/v1/deployments",
        files={"bundle": ("bundle.zip", zip_project(Path(args.directory)), "application/zip")},
        data=data,
        headers={"Authorization": f"Bearer {key}"},
        timeout=600,
    )
    if response.status_code not in (201, 202):
        return _fail(response)
    body = response.json()
    print(f"deployment {body['id']}: {body['skillpack']} v{body['version']} ({body['status']})")
    for skill in body["skills"]:
        print(f"  {skill['name']:<20} {skill['kind']:<9} {skill['entrypoint']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="puras", description="Run and administer Puras.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="start the whole platform on this machine")
    p.add_argument("--examples", default="examples/quickstart", help="project deployed once on first start")
    p.add_argument("--no-examples", action="store_true")
    p.set_defaults(func=cmd_up)

    admin = sub.add_parser("admin", help="operator commands").add_subparsers(dest="admin", required=True)
    p = admin.add_parser("create-workspace", help="create a workspace and print its first API key")
    p.add_argument("name", help="slug: lowercase letters, digits and '-'")
    p.add_argument("--display-name")
    p.add_argument("--credit-usd", help="opening credit in USD, e.g. 10")
    p.set_defaults(func=cmd_create_workspace)
    p = admin.add_parser("grant", help="give a workspace credit")
    p.add_argument("workspace")
    p.add_argument("--usd", required=True)
    p.add_argument("--note", default="")
    p.set_defaults(func=cmd_grant)

    p = sub.add_parser("push", help="deploy a project directory")
    p.add_argument("directory")
    p.add_argument("--skillpack")
    p.add_argument("--notes", default="")
    p.add_argument("--no-activate", action="store_true")
    p.add_argument("--api-key")
    p.set_defaults(func=cmd_push)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
