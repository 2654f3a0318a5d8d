"""How the API commands speak: human-readable by default, one JSON document with ``--json``;
errors on stderr with the API's code; and the exit codes scripts can rely on."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Any

import httpx
import puras
from puras._paths import PathSegmentError

from puras_cli.config import Config, NotConfigured, resolve


class Exit(IntEnum):
    """Exit codes of the API commands (documented in docs/cli.md)."""

    OK = 0
    JOB_FAILED = 1
    """The job ended failed or cancelled."""
    USAGE = 2
    """Bad arguments (argparse's own code), or no configuration."""
    API_ERROR = 3
    """The API refused the request: the error's code and message are on stderr."""
    TIMED_OUT = 4
    """The wait ended with the job still queued or running."""
    UNREACHABLE = 5
    """The API could not be reached."""
    INTERRUPTED = 130


class CommandError(Exception):
    """A failure the command reports as one line, with its exit code."""

    def __init__(self, message: str, code: Exit, *, name: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.name = name or code.name.lower()


def add_common(parser: argparse.ArgumentParser) -> None:
    """``--json``, ``--api-key`` and ``--api-base`` on every API command."""
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("--api-key", help="default: PURAS_API_KEY, then `puras login`")
    parser.add_argument("--api-base", help="default: PURAS_API_BASE, then `puras login`")


def leaf(
    group: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    func: Callable[[argparse.Namespace], int],
    help: str,
) -> argparse.ArgumentParser:
    """An API command: its parser, with the common options, running ``func``."""
    parser: argparse.ArgumentParser = group.add_parser(name, help=help)
    add_common(parser)
    parser.set_defaults(func=func)
    return parser


def call(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> Any:
    """One API request with the command's key; the JSON answer."""
    with client_of(args) as client:
        return client.request(method, path, **kwargs)


def config_of(args: argparse.Namespace) -> Config:
    return resolve(api_key=args.api_key, api_base=args.api_base)


def client_of(args: argparse.Namespace) -> puras.Client:
    config = config_of(args)
    return puras.Client(api_key=config.api_key, api_base=config.api_base)


def emit(args: argparse.Namespace, data: Any, human: Callable[[Any], None]) -> None:
    """``data`` as JSON with ``--json``, else as ``human`` prints it."""
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        human(data)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    """A plain aligned table on stdout (no rows: the headers alone)."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def command(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run an API command: API errors, an id that cannot be sent, an unreachable API and Ctrl-C
    become one line on stderr and their exit code."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except puras.PurasAPIError as exc:
            return _fail(args, exc.code, exc.message, Exit.API_ERROR, status=exc.status)
        except CommandError as exc:
            return _fail(args, exc.name, str(exc), exc.code)
        except PathSegmentError as exc:
            return _fail(args, "usage", str(exc), Exit.USAGE)
        except NotConfigured as exc:
            return _fail(args, "not_configured", str(exc), Exit.USAGE)
        except httpx.TransportError as exc:
            return _fail(
                args,
                "unreachable",
                f"cannot reach the API: {exc or type(exc).__name__}",
                Exit.UNREACHABLE,
            )
        except KeyboardInterrupt:
            return Exit.INTERRUPTED

    return run


def _fail(
    args: argparse.Namespace, code: str, message: str, exit_code: Exit, *, status: int | None = None
) -> int:
    if getattr(args, "json", False):
        error = {"code": code, "message": message, **({"status": status} if status else {})}
        print(json.dumps({"error": error}), file=sys.stderr)
    else:
        print(f"error: {code}: {message}", file=sys.stderr)
    return exit_code
