"""``puras drive upload|ls|sign|rm|zip``: the workspace's files."""

from __future__ import annotations

import argparse
import mimetypes
import sys
from pathlib import Path
from typing import Any

from puras_cli.commands.output import (
    CommandError,
    Exit,
    call,
    client_of,
    command,
    emit,
    leaf,
)


@command
def cmd_upload(args: argparse.Namespace) -> int:
    source = Path(args.file)
    if not source.is_file():
        raise CommandError(f"{source} is not a file", Exit.USAGE)
    kind = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
    with client_of(args) as client, source.open("rb") as data:
        stored = client.request(
            "POST",
            "/v1/drive/upload",
            files={"file": (source.name, data, kind)},
            data={"path": args.path} if args.path else None,
            timeout=600,
        )
    emit(args, stored, lambda s: print(f"{s['drive_path']}\n{s.get('signed_url', '')}"))
    return Exit.OK


@command
def cmd_ls(args: argparse.Namespace) -> int:
    listing = call(args, "GET", "/v1/drive/list", params={"prefix": args.prefix})

    def human(folder: dict[str, Any]) -> None:
        for name in folder["folders"]:
            print(f"{'':>12}  {'':<25}  {name}/")
        for f in folder["files"]:
            print(f"{f['bytes']:>12}  {f['updated_at'][:25]:<25}  {f['name']}")

    emit(args, listing, human)
    return Exit.OK


@command
def cmd_sign(args: argparse.Namespace) -> int:
    signed = call(args, "GET", "/v1/drive/sign", params={"path": args.path, "ttl": args.ttl})
    emit(args, signed, lambda s: print(s["signed_url"]))
    return Exit.OK


@command
def cmd_rm(args: argparse.Namespace) -> int:
    answer = call(args, "DELETE", "/v1/drive/object", params={"path": args.path})
    emit(args, answer, lambda a: print(f"deleted {a['deleted']} file(s)"))
    return Exit.OK


@command
def cmd_zip(args: argparse.Namespace) -> int:
    name = (args.prefix.rstrip("/").rsplit("/", 1)[-1] or "drive") + ".zip"
    target = Path(args.output or name)
    if target.exists() and not args.force:
        raise CommandError(f"{target} exists; pass --force to overwrite it", Exit.USAGE)
    partial = target.with_name(target.name + ".part")
    with client_of(args) as client:
        try:
            with partial.open("wb") as out:
                size = client.download("/v1/drive/zip", out, params={"prefix": args.prefix})
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    partial.replace(target)
    emit(
        args,
        {"path": str(target), "bytes": size},
        lambda z: print(f"{z['path']} ({z['bytes']} bytes)", file=sys.stderr),
    )
    return Exit.OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    drive = sub.add_parser("drive", help="the workspace's files").add_subparsers(
        dest="drive", required=True
    )
    p = leaf(drive, "upload", cmd_upload, "store a file; prints its drive_path and a signed link")
    p.add_argument("file")
    p.add_argument("--path", help="where in the drive (default uploads/<uuid>.<ext>)")
    p = leaf(drive, "ls", cmd_ls, "a folder's folders and files")
    p.add_argument("prefix", nargs="?", default="")
    p = leaf(drive, "sign", cmd_sign, "a signed link to a file")
    p.add_argument("path")
    p.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    p = leaf(drive, "rm", cmd_rm, "delete a file, or a folder's files (trailing /)")
    p.add_argument("path")
    p = leaf(drive, "zip", cmd_zip, "download a folder as one zip")
    p.add_argument("prefix", nargs="?", default="")
    p.add_argument("-o", "--output", help="file to write (default <folder>.zip)")
    p.add_argument("--force", action="store_true", help="overwrite the output file")
