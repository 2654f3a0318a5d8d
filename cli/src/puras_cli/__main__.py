"""The ``puras`` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from puras._paths import api_path

from puras_cli import config
from puras_cli.bundles import zip_project
from puras_cli.commands import account, deployments, drive, jobs, keys, secrets

if TYPE_CHECKING:
    from puras_cli.home import Home


def _gateway_url(home: Home) -> str:
    if url := os.environ.get("PURAS_API_BASE"):
        return url.rstrip("/")
    ports = home.path / "ports.json"
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
    from puras_cli.home import Home  # the embedded engines' module: operator commands only

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
    from puras_cli.home import Home

    home = Home()
    response = httpx.post(
        _gateway_url(home) + api_path("/v1/admin/workspaces/{}/grants", args.workspace),
        json={"usd": args.usd, "note": args.note},
        headers={"Authorization": f"Bearer {_admin_token(home)}"},
        timeout=30,
    )
    if response.status_code != 202:
        return _fail(response)
    print(f"granted {response.json()['amount_micros']} micros to {args.workspace}")
    return 0


def cmd_create_user(args: argparse.Namespace) -> int:
    home = Home()
    body: dict[str, object] = {"email": args.email, "role": args.role}
    if args.password_stdin:
        body["password"] = sys.stdin.readline().rstrip("\n")
    if args.reset_password:
        body["reset_password"] = True
    response = httpx.post(
        _gateway_url(home) + api_path("/v1/admin/workspaces/{}/users", args.workspace),
        json=body,
        headers={"Authorization": f"Bearer {_admin_token(home)}"},
        timeout=30,
    )
    if response.status_code not in (200, 201):
        return _fail(response)
    user = response.json()
    state = "created" if user["created"] else "already existed; added"
    print(f"user      {user['email']} ({user['user_id']}) {state}")
    print(f"workspace {user['workspace']} as {user['role']}")
    if "password" in user:
        print(f"password  {user['password']}")
        print("The password is shown once; store it now.", file=sys.stderr)
    print(f"console   {_gateway_url(home)}/console")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    try:
        cfg = config.resolve(api_key=args.api_key, api_base=args.api_base)
    except config.NotConfigured as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    key = cfg.api_key
    data = {"notes": args.notes, "activate": "false" if args.no_activate else "true"}
    if args.skillpack:
        data["skillpack"] = args.skillpack
    response = httpx.post(
        f"{cfg.api_base}/v1/deployments",
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
    if body["status"] == "building":
        body = _follow_build(cfg.api_base + api_path("/v1/deployments/{}", body["id"]), key)
    if body["status"] == "failed":
        print(f"error: {body.get('error') or 'the build failed'}", file=sys.stderr)
        return 1
    return 0


def _follow_build(url: str, key: str) -> dict[str, Any]:
    """Poll a building deployment, printing its build log as it grows, until it is done."""
    import time

    shown = 0
    while True:
        body: dict[str, Any] = httpx.get(
            url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ).json()
        log = body.get("build_log", "")
        if len(log) > shown:
            sys.stdout.write(log[shown:])
            shown = len(log)
        if body["status"] != "building":
            print(f"deployment {body['id']}: {body['status']}")
            return body
        time.sleep(1.0)


def nats_users_file(extensions: list[str] | None = None) -> str:
    """The NATS users and permissions for a deployment whose passwords come from the
    environment (``$NATS_<SERVICE>_PASSWORD``, resolved by nats-server at start), with a user
    for each extension given as ``NAME:STREAM:FILTER``."""
    import json

    from puras_common.access import (
        SERVICES,
        NatsUser,
        extension_permissions,
        service_permissions,
    )

    from puras_cli.engines import nats_users_config

    def var(name: str) -> str:
        return "$NATS_" + name.upper().replace("-", "_") + "_PASSWORD"

    users = [NatsUser(s, var(s), service_permissions(s)) for s in SERVICES] + [
        NatsUser("admin", var("admin"))
    ]
    for spec in extensions or []:
        name, stream, filter_subject = spec.split(":", 2)
        permissions = extension_permissions(name, stream=stream, filter_subject=filter_subject)
        users.append(NatsUser(name, var(f"ext_{name}"), permissions))
    text = json.dumps(nats_users_config(users), indent=2)
    # nats-server resolves $VARIABLES only when they are not quoted.
    for user in users:
        text = text.replace(f'"{user.password}"', user.password)
    return (
        "# Generated by `puras admin nats-config` from puras_common.access; do not edit by hand.\n"
        f"authorization: {{\n  users: {text}\n}}\n"
    )


def cmd_asyncapi(_args: argparse.Namespace) -> int:
    from puras_common.asyncapi import render

    sys.stdout.write(render())
    return 0


def cmd_nats_config(args: argparse.Namespace) -> int:
    sys.stdout.write(nats_users_file(args.extension))
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    """Create the database, per-service roles (passwords from $PG_<SERVICE>_PASSWORD), the
    streams and every service's durable consumers (services may not manage them)."""
    from puras_common.access import STATEFUL
    from puras_common.bus import connect_nats
    from puras_common.consumers import provision_bus

    from puras_cli.engines import provision_postgres

    async def provision() -> None:
        passwords = {s: os.environ[f"PG_{s.upper().replace('-', '_')}_PASSWORD"] for s in STATEFUL}
        await provision_postgres(
            os.environ["PURAS_DATABASE_URL"], database=args.database, passwords=passwords
        )
        nc = await connect_nats(os.environ["PURAS_NATS_URL"], name="puras-provision")
        try:
            await provision_bus(nc.jetstream(), replicas=args.stream_replicas)
        finally:
            await nc.close()

    asyncio.run(provision())
    print(
        f"provisioned database {args.database}, streams (replicas={args.stream_replicas}) "
        "and consumers"
    )
    return 0


def cmd_mcp(_args: argparse.Namespace) -> int:
    from puras_cli.mcp_server import serve

    serve()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="puras",
        description="Run and administer Puras, and call its API: run skills, follow jobs, "
        "manage deployments, secrets, keys and files.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="start the whole platform on this machine")
    p.add_argument(
        "--examples", default="examples/quickstart", help="project deployed once on first start"
    )
    p.add_argument("--no-examples", action="store_true")
    p.set_defaults(func=cmd_up)

    admin = sub.add_parser("admin", help="operator commands").add_subparsers(
        dest="admin", required=True
    )
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

    p = admin.add_parser(
        "create-user", help="create a person who signs in to the console, in a workspace"
    )
    p.add_argument("workspace", help="the workspace's slug")
    p.add_argument("email")
    p.add_argument("--role", choices=("owner", "member"), default="owner")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (default: generate one)",
    )
    p.add_argument(
        "--reset-password",
        action="store_true",
        help="the user exists: give them a new password and end their sessions",
    )
    p.set_defaults(func=cmd_create_user)

    p = admin.add_parser("nats-config", help="print the NATS users file for deploy/")
    p.add_argument(
        "--extension",
        action="append",
        default=[],
        metavar="NAME:STREAM:FILTER",
        help="add a user for an extension that reads STREAM through its consumer NAME",
    )
    p.set_defaults(func=cmd_nats_config)
    p = admin.add_parser("asyncapi", help="print the AsyncAPI document of the internal events")
    p.set_defaults(func=cmd_asyncapi)
    p = admin.add_parser(
        "provision", help="create database roles, schemas and streams on running servers"
    )
    p.add_argument("--database", default="puras")
    p.add_argument("--stream-replicas", type=int, default=1)
    p.set_defaults(func=cmd_provision)

    p = sub.add_parser("push", help="deploy a project directory")
    p.add_argument("directory")
    p.add_argument("--skillpack")
    p.add_argument("--notes", default="")
    p.add_argument("--no-activate", action="store_true")
    p.add_argument("--api-key")
    p.add_argument("--api-base")
    p.set_defaults(func=cmd_push)

    for commands in (account, jobs, deployments, secrets, keys, drive):
        commands.register(sub)

    p = sub.add_parser("mcp", help="serve the MCP tools over stdio, for coding agents")
    p.set_defaults(func=cmd_mcp)

    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
