"""``puras run`` and ``puras jobs list|get|tail|cancel|answer``.

``run`` and ``tail`` follow the job's event stream (resumed if the connection drops) and show
each event as it happens on stderr, so stdout carries only the result; the exit code says how
the job ended. A job that asks a question shows it, with the command that answers it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

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

TERMINAL = ("succeeded", "failed", "cancelled")


def parse_inputs(pairs: list[str], whole: str | None) -> dict[str, Any]:
    """``--inputs`` (JSON, or ``@file.json``) overlaid with ``-i key=value`` pairs; a value that
    parses as JSON is taken as JSON (``n=3``, ``flag=true``, ``tags=["a"]``), else as text."""
    inputs: dict[str, Any] = {}
    if whole:
        text = Path(whole[1:]).read_text() if whole.startswith("@") else whole
        try:
            loaded = json.loads(text)
        except ValueError as exc:
            raise CommandError(f"--inputs is not JSON: {exc}", Exit.USAGE) from None
        if not isinstance(loaded, dict):
            raise CommandError("--inputs must be a JSON object", Exit.USAGE)
        inputs.update(loaded)
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise CommandError(f"-i {pair!r}: expected key=value", Exit.USAGE)
        try:
            inputs[key] = json.loads(value)
        except ValueError:
            inputs[key] = value
    return inputs


class Progress:
    """One line per event of job ``job_id``, as it arrives, with the time since the display
    started."""

    def __init__(self, out: TextIO, job_id: str) -> None:
        self.out = out
        self.job_id = job_id
        self.start = time.monotonic()

    def show(self, event: dict[str, Any]) -> None:
        elapsed = time.monotonic() - self.start
        summary = describe(event, self.job_id)
        print(f"{elapsed:7.2f}s  {event['type']:<11} {summary}".rstrip(), file=self.out)
        self.out.flush()


def describe(event: dict[str, Any], job_id: str) -> str:
    """A short human summary of an event's payload."""
    payload = event.get("payload") or {}
    if event["type"] == "log":
        return str(payload.get("text", "")).rstrip("\n")
    if event["type"] == "queued":
        return f"{payload.get('skillpack')}/{payload.get('skill')} v{payload.get('version')}"
    if event["type"] == "input_requested":
        schema = json.dumps(payload.get("answer_schema"), separators=(",", ":"))
        return (
            f"{payload.get('prompt')} (an answer matching {schema}: "
            f"puras jobs answer {job_id} JSON)"
        )
    text = json.dumps(payload, separators=(",", ":"), default=str)
    return text if len(text) <= 100 else text[:97] + "..."


def follow(client: puras.Client, job_id: str, *, after_id: int, quiet: bool) -> dict[str, Any]:
    """Show the job's events until it ends; returns the ended job."""
    progress = None if quiet else Progress(sys.stderr, job_id)
    for event in client.events(job_id, after_id=after_id):
        if progress:
            progress.show(event)
    return client.get(job_id)


def finish(args: argparse.Namespace, job: dict[str, Any]) -> int:
    """Print the job's result (or the whole job with ``--json``); exit by its status."""
    if args.json:
        print(json.dumps(job, indent=2, default=str))
    elif job["status"] == "succeeded":
        print(json.dumps(job.get("result"), indent=2, default=str))
    else:
        print(
            f"job {job['id']} {job['status']}: {job.get('error') or ''}".rstrip(), file=sys.stderr
        )
    if job["status"] == "succeeded":
        return Exit.OK
    return Exit.JOB_FAILED if job["status"] in TERMINAL else Exit.TIMED_OUT


@command
def cmd_run(args: argparse.Namespace) -> int:
    inputs = parse_inputs(args.input, args.inputs)
    with client_of(args) as client:
        job = client.submit(args.skill, inputs, skillpack=args.skillpack, version=args.version)
        if not args.json:
            print(
                f"job {job['id']}: {job['skillpack']}/{job['skill_name']} v{job['version']}",
                file=sys.stderr,
            )
        try:
            if args.no_stream:
                ended = client.wait(job["id"], timeout=args.timeout, poll_interval=1.0)
            else:
                ended = follow(client, job["id"], after_id=0, quiet=args.json)
        except KeyboardInterrupt:
            print(
                f"\njob {job['id']} keeps running; stop it with `puras jobs cancel {job['id']}`",
                file=sys.stderr,
            )
            raise
        return finish(args, ended)


@command
def cmd_list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    page = call(args, "GET", "/v1/jobs", params=params)
    emit(
        args,
        page,
        lambda p: table(
            [
                (
                    j["id"],
                    j["status"],
                    f"{j['skillpack']}/{j['skill_name']}",
                    j["cost_micros"],
                    j["created_at"],
                )
                for j in p["data"]
            ],
            ("ID", "STATUS", "SKILL", "COST_MICROS", "CREATED"),
        ),
    )
    return Exit.OK


@command
def cmd_get(args: argparse.Namespace) -> int:
    with client_of(args) as client:
        job = client.get(args.job_id)

    def human(j: dict[str, Any]) -> None:
        for field in (
            "id",
            "status",
            "skill_name",
            "skillpack",
            "version",
            "cost_micros",
            "created_at",
            "finished_at",
            "error",
        ):
            if j.get(field) is not None:
                print(f"{field:<12} {j[field]}")
        if j.get("result") is not None:
            print("result")
            print(json.dumps(j["result"], indent=2, default=str))

    emit(args, job, human)
    return Exit.OK


@command
def cmd_tail(args: argparse.Namespace) -> int:
    with client_of(args) as client:
        if args.json:
            for event in client.events(args.job_id, after_id=args.after_id):
                print(json.dumps(event, default=str), flush=True)
            job = client.get(args.job_id)
            return Exit.OK if job["status"] == "succeeded" else Exit.JOB_FAILED
        return finish(args, follow(client, args.job_id, after_id=args.after_id, quiet=False))


def parse_answer(text: str) -> Any:
    """An answer given as JSON text, ``@file.json``, or ``-`` for standard input."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise CommandError(f"cannot read the answer: {exc}", Exit.USAGE) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandError(
            f"the answer is not JSON ({exc}); a text answer is quoted: '\"yes\"'", Exit.USAGE
        ) from None


@command
def cmd_answer(args: argparse.Namespace) -> int:
    answer = parse_answer(args.answer)
    with client_of(args) as client:
        job = client.provide_input(args.job_id, answer, request_id=args.request_id)
    emit(args, job, lambda j: print(f"job {j['id']} {j['status']}: answered, runs on"))
    return Exit.OK


@command
def cmd_cancel(args: argparse.Namespace) -> int:
    job = call(args, "POST", api_path("/v1/jobs/{}/cancel", args.job_id))
    emit(args, job, lambda j: print(f"job {j['id']} {j['status']}"))
    return Exit.OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = leaf(sub, "run", cmd_run, "run a skill: stream its events, print its result")
    p.add_argument("skill", help="skill, skillpack/skill or workspace/skillpack/skill")
    p.add_argument("-i", "--input", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--inputs", metavar="JSON", help="the whole inputs object, or @file.json")
    p.add_argument("--skillpack")
    p.add_argument("--version", type=int, help="pin a deployment version")
    p.add_argument("--no-stream", action="store_true", help="poll for the end instead of streaming")
    p.add_argument(
        "--timeout", type=float, default=600, help="seconds --no-stream waits (default 600)"
    )

    jobs = sub.add_parser("jobs", help="list, read, follow, answer and cancel jobs").add_subparsers(
        dest="jobs", required=True
    )
    p = leaf(jobs, "list", cmd_list, "newest first")
    p.add_argument("--status", choices=("queued", "running", "waiting", *TERMINAL))
    p.add_argument("--limit", type=int, default=25)
    p = leaf(jobs, "get", cmd_get, "one job: status, result, cost")
    p.add_argument("job_id")
    p = leaf(jobs, "tail", cmd_tail, "follow a job's events until it ends")
    p.add_argument("job_id")
    p.add_argument("--after-id", type=int, default=0, help="resume after this event id")
    p = leaf(jobs, "cancel", cmd_cancel, "cancel a queued or running job")
    p.add_argument("job_id")
    p = leaf(jobs, "answer", cmd_answer, "answer the question a waiting job asked")
    p.add_argument("job_id")
    p.add_argument("answer", help="JSON matching the question's answer_schema, @file.json, or -")
    p.add_argument("--request-id", help="refuse the answer unless the job waits on this question")
