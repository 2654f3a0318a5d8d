"""Reading a project bundle: skills are the immediate children of ``skills/`` that hold a
``skill.yaml``; the directory name is the skill name. Every problem is reported with the file
and field it is in, all at once, so one push shows everything to fix."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final

import yaml
from puras_common.cron import Cron, CronError
from puras_common.events import JobKind, ScheduleManifest, SkillManifest, ToolManifest
from puras_common.events.jobs import (
    MAX_RETRY_ATTEMPTS,
    MAX_RETRY_BACKOFF_SECONDS,
    RetryPolicy,
)
from puras_common.schemas import schema_problem, validate
from puras_pricing.models import catalogue

SKILL_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
TOOL_NAME: Final = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
PY_ENTRYPOINT: Final = re.compile(
    r"^(?P<file>[A-Za-z0-9_][A-Za-z0-9_./-]*\.py):(?P<func>[A-Za-z_][A-Za-z0-9_]*)$"
)
MODEL_SLUG: Final = re.compile(r"^[a-z0-9-]+/[a-z0-9._-]+$")
BUILTIN_TOOLS: Final = frozenset(
    {
        "bash",
        "file_read",
        "download_url",
        "web_fetch",
        "web_search",
        "image_search",
        "media",
        "set_output",
    }
)
SKILL_KEYS: Final = (
    "description",
    "entrypoint",
    "model",
    "disable_bash",
    "input_schema",
    "output_schema",
    "tools",
    "timeout_seconds",
    "retries",
    "network",
    "schedules",
)
TOOL_KEYS: Final = ("name", "description", "entrypoint", "input_schema", "output_schema")
MAX_TIMEOUT_SECONDS: Final = 3600
MAX_YAML_BYTES: Final = 256 * 1024


@dataclass(frozen=True)
class Problem:
    file: str
    field: str | None
    message: str
    pointer: str | None = None
    """Where inside the field's value, as a JSON pointer (a schema's refused pattern)."""

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.message}"

    def as_detail(self) -> dict[str, Any]:
        detail = {"file": self.file, "field": self.field, "message": self.message}
        if self.pointer is not None:
            detail["pointer"] = self.pointer
        return detail


@dataclass
class BundleReport:
    skills: list[SkillManifest] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    requirements: str | None = None
    """The text of requirements.txt, when the project has one and it is usable."""

    @property
    def has_requirements(self) -> bool:
        return self.requirements is not None


def read_bundle(root: Path) -> BundleReport:
    """Discover and validate every skill under ``root/skills`` and the project's requirements.txt."""
    report = BundleReport()
    if (root / "requirements.txt").exists():
        report.requirements = read_requirements(root / "requirements.txt", report.problems)
    skills_dir = root / "skills"
    if not skills_dir.is_dir():
        report.problems.append(
            Problem(
                "skills/",
                None,
                "no skills/ directory: a project keeps each skill in skills/<name>/",
            )
        )
        return report
    candidates = sorted(
        p for p in skills_dir.iterdir() if p.is_dir() and (p / "skill.yaml").is_file()
    )
    for skill_dir in candidates:
        manifest = _read_skill(skill_dir, root, report.problems)
        if manifest is not None:
            report.skills.append(manifest)
    if not candidates:
        report.problems.append(
            Problem(
                "skills/",
                None,
                "no skills found: add skills/<name>/skill.yaml for at least one skill",
            )
        )
    return report


def _read_skill(skill_dir: Path, root: Path, problems: list[Problem]) -> SkillManifest | None:
    name = skill_dir.name
    rel = f"skills/{name}/skill.yaml"
    before = len(problems)

    def problem(fld: str | None, message: str, pointer: str | None = None) -> None:
        problems.append(Problem(rel, fld, message, pointer))

    if not SKILL_NAME.match(name):
        problems.append(
            Problem(
                f"skills/{name}/", None, f"skill name {name!r} must match ^[a-z0-9][a-z0-9_-]*$"
            )
        )
    yaml_path = skill_dir / "skill.yaml"
    if yaml_path.stat().st_size > MAX_YAML_BYTES:
        problem(
            None, f"skill.yaml is {yaml_path.stat().st_size} bytes; the limit is {MAX_YAML_BYTES}"
        )
        return None
    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        problem(None, f"not valid YAML: {exc}")
        return None
    if not isinstance(data, dict):
        problem(None, "must be a mapping of fields (description, entrypoint, …)")
        return None
    for key in data:
        if key not in SKILL_KEYS:
            problem(str(key), f"unknown field; allowed: {', '.join(SKILL_KEYS)}")

    description = data.get("description", "")
    if not isinstance(description, str):
        problem("description", "must be a string")
    entrypoint = data.get("entrypoint")
    kind: JobKind | None = None
    if not isinstance(entrypoint, str) or not entrypoint:
        problem("entrypoint", "required: a markdown file (SKILL.md) or 'file.py:function'")
    elif entrypoint.endswith(".md"):
        kind = JobKind.AGENT
        if _inside(skill_dir, entrypoint) is None or not (skill_dir / entrypoint).is_file():
            problem("entrypoint", f"{entrypoint} does not exist in skills/{name}/")
    else:
        kind = JobKind.FUNCTION
        _check_python_entrypoint(skill_dir, entrypoint, "entrypoint", problem)

    model = data.get("model")
    if model is not None:
        if not isinstance(model, str) or not MODEL_SLUG.match(model):
            problem("model", "must be a model slug such as claude/sonnet-4-7")
        elif kind is JobKind.FUNCTION:
            problem("model", "only agentic skills (a .md entrypoint) choose a model")
        elif catalogue().get(model) is None:
            problem("model", catalogue().unknown_message(model))
    disable_bash = data.get("disable_bash", False)
    if not isinstance(disable_bash, bool):
        problem("disable_bash", "must be true or false")
    for key in ("input_schema", "output_schema"):
        if key in data and data[key] is not None and (why := schema_problem(data[key])):
            problem(key, f"not a valid JSON Schema (2020-12): {why}", why.pointer)
    timeout = data.get("timeout_seconds")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int)
        or not 1 <= timeout <= MAX_TIMEOUT_SECONDS
    ):
        problem(
            "timeout_seconds", f"must be a whole number of seconds from 1 to {MAX_TIMEOUT_SECONDS}"
        )
    retries = _read_retries(data.get("retries"), kind, problem)
    network = data.get("network", True)
    if not isinstance(network, bool):
        problem(
            "network", "must be true (the default: the skill's code may reach the network) or false"
        )
    tools = _read_tools(data.get("tools"), skill_dir, kind, problem)
    schedules = _read_schedules(data.get("schedules"), data.get("input_schema"), problem)

    if len(problems) > before or kind is None:
        return None
    return SkillManifest(
        name=name,
        description=description,
        kind=kind,
        entrypoint=entrypoint,
        # Fixed at push: a later change of the platform default never moves a deployed skill.
        model=model if model is not None or kind is not JobKind.AGENT else catalogue().default,
        disable_bash=disable_bash,
        input_schema=data.get("input_schema"),
        output_schema=data.get("output_schema"),
        timeout_seconds=timeout,
        retries=retries,
        tools=tuple(tools),
        network=network,
        schedules=tuple(schedules),
    )


def _read_retries(raw: Any, kind: JobKind | None, problem: Any) -> RetryPolicy | None:
    """``retries: {max_attempts, backoff_seconds}``: deterministic skills only (an agent's
    calls are paid for, and it never runs twice)."""
    if raw is None:
        return None
    if kind is JobKind.AGENT:
        problem("retries", "only deterministic skills (a Python entrypoint) are retried")
        return None
    if not isinstance(raw, dict):
        problem("retries", "must be a mapping: {max_attempts, backoff_seconds}")
        return None
    for key in raw:
        if key not in ("max_attempts", "backoff_seconds"):
            problem(f"retries.{key}", "unknown field; allowed: max_attempts, backoff_seconds")
    attempts = raw.get("max_attempts")
    if (
        isinstance(attempts, bool)
        or not isinstance(attempts, int)
        or not (1 <= attempts <= MAX_RETRY_ATTEMPTS)
    ):
        problem(
            "retries.max_attempts",
            f"required: a whole number of runs from 1 to {MAX_RETRY_ATTEMPTS}, the first included",
        )
        return None
    backoff = raw.get("backoff_seconds", 1)
    if (
        isinstance(backoff, bool)
        or not isinstance(backoff, int | float)
        or not (0 <= backoff <= MAX_RETRY_BACKOFF_SECONDS)
    ):
        problem(
            "retries.backoff_seconds",
            f"must be a number of seconds from 0 to {MAX_RETRY_BACKOFF_SECONDS}",
        )
        return None
    return RetryPolicy(max_attempts=attempts, backoff_seconds=float(backoff))


def _read_tools(
    raw: Any, skill_dir: Path, kind: JobKind | None, problem: Any
) -> list[ToolManifest]:
    if raw is None:
        return []
    if kind is JobKind.FUNCTION:
        problem("tools", "only agentic skills (a .md entrypoint) declare tools")
        return []
    if not isinstance(raw, list):
        problem("tools", "must be a list of tools")
        return []
    tools: list[ToolManifest] = []
    seen: set[str] = set()
    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            problem(where, "must be a mapping with name, description, entrypoint")
            continue
        for key in tool:
            if key not in TOOL_KEYS:
                problem(f"{where}.{key}", f"unknown field; allowed: {', '.join(TOOL_KEYS)}")
        name = tool.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            problem(f"{where}.name", "required, matching ^[a-zA-Z0-9_-]{1,64}$")
        elif name in BUILTIN_TOOLS:
            problem(f"{where}.name", f"{name!r} is a built-in tool's name")
        elif name in seen:
            problem(f"{where}.name", f"tool {name!r} is declared twice")
        else:
            seen.add(name)
        if not isinstance(tool.get("description"), str) or not tool.get("description"):
            problem(f"{where}.description", "required: tells the model when to use the tool")
        entry = tool.get("entrypoint")
        if not isinstance(entry, str):
            problem(f"{where}.entrypoint", "required: 'tools/file.py:function'")
        else:
            _check_python_entrypoint(skill_dir, entry, f"{where}.entrypoint", problem)
        for key in ("input_schema", "output_schema"):
            if tool.get(key) is not None and (why := schema_problem(tool[key])):
                problem(f"{where}.{key}", f"not a valid JSON Schema (2020-12): {why}", why.pointer)
        if isinstance(name, str) and isinstance(entry, str):
            tools.append(
                ToolManifest(
                    name=name,
                    description=str(tool.get("description", "")),
                    entrypoint=entry,
                    input_schema=tool.get("input_schema"),
                    output_schema=tool.get("output_schema"),
                )
            )
    return tools


def _inside(skill_dir: Path, relative: str) -> Path | None:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts:
        return None
    return skill_dir / path


def _check_python_entrypoint(skill_dir: Path, entrypoint: str, fld: str, problem: Any) -> None:
    match = PY_ENTRYPOINT.match(entrypoint)
    if not match:
        problem(
            fld,
            f"{entrypoint!r} must look like 'main.py:run' (a .py file in the skill directory, a function)",
        )
        return
    file, func = match.group("file"), match.group("func")
    target = _inside(skill_dir, file)
    if target is None:
        problem(fld, f"{file} must be inside the skill directory")
        return
    if not target.is_file():
        problem(fld, f"{file} does not exist in skills/{skill_dir.name}/")
        return
    try:
        tree = ast.parse(target.read_bytes(), filename=file)
    except (SyntaxError, ValueError) as exc:
        problem(fld, f"{file} does not parse: {exc}")
        return
    defined = (
        {
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        | {
            t.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        | {
            (a.asname or a.name)
            for node in tree.body
            if isinstance(node, ast.ImportFrom)
            for a in node.names
        }
    )
    if func not in defined:
        problem(fld, f"{file} defines no function {func!r}")


MAX_REQUIREMENTS_BYTES: Final = 64 * 1024
_FILE_OPTIONS: Final = ("-e", "--editable", "-r", "--requirement", "-c", "--constraint")
_URL_OPTIONS: Final = ("-f", "--find-links", "-i", "--index-url", "--extra-index-url")


def read_requirements(path: Path, problems: list[Problem]) -> str | None:
    """The text of requirements.txt when pip can install it the same way on every host.

    A build is shared by every deployment with the same file, so the file must not point at
    other files of the bundle (``-r``, ``-e``, local paths): those could differ while the text
    stays the same. Packages come from an index or a URL.
    """
    where = "requirements.txt"
    if not path.is_file():
        problems.append(Problem(where, None, "must be a regular file"))
        return None
    size = path.stat().st_size
    if size > MAX_REQUIREMENTS_BYTES:
        problems.append(
            Problem(where, None, f"is {size} bytes; the limit is {MAX_REQUIREMENTS_BYTES}")
        )
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problems.append(Problem(where, None, "is not UTF-8 text"))
        return None
    before = len(problems)
    for number, line in _logical_lines(text):
        problem = _requirement_problem(line)
        if problem:
            problems.append(Problem(where, f"line {number}", problem))
    return text if len(problems) == before else None


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) with comments dropped and ``\\`` continuations joined."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined = (pending + line).strip()
        pending = ""
        if joined:
            lines.append((start, joined))
    if pending.strip():
        lines.append((start, pending.strip()))
    return lines


def _requirement_problem(line: str) -> str | None:
    words = line.split()
    first = words[0]
    option = first.split("=", 1)[0]
    if option in _FILE_OPTIONS:
        return (
            f"{option} refers to another file or directory; a build is shared by every deployment with "
            "the same requirements.txt, so list packages from an index or a URL instead"
        )
    if option in _URL_OPTIONS:
        value = first.split("=", 1)[1] if "=" in first else (words[1] if len(words) > 1 else "")
        if not value.startswith(("http://", "https://")):
            return f"{option} must be an http(s) URL, not {value!r}"
        return None
    if first.startswith((".", "/", "~", "file:")) or " @ file:" in line or "@file:" in line:
        return (
            "local paths are not installable here: publish the package to an index, or give its URL"
        )
    return None


SCHEDULE_KEYS: Final = ("name", "cron", "timezone", "inputs", "missed", "catch_up_limit")
SCHEDULE_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
MAX_SCHEDULES_PER_SKILL: Final = 10
MAX_CATCH_UP: Final = 100


def _read_schedules(raw: Any, input_schema: Any, problem: Any) -> list[ScheduleManifest]:
    """``schedules:``: each fires the skill with its ``inputs`` while the deployment is active."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_SCHEDULES_PER_SKILL:
        problem("schedules", f"must be a list of at most {MAX_SCHEDULES_PER_SKILL} schedules")
        return []
    schedules: list[ScheduleManifest] = []
    for i, entry in enumerate(raw):
        where = f"schedules[{i}]"
        if not isinstance(entry, dict):
            problem(where, "must be a mapping with cron (and name, timezone, inputs, missed)")
            continue
        if (manifest := _read_schedule(entry, where, input_schema, problem)) is not None:
            if any(s.name == manifest.name for s in schedules):
                problem(f"{where}.name", f"schedule {manifest.name!r} is declared twice")
            else:
                schedules.append(manifest)
    return schedules


def _read_schedule(
    entry: dict[str, Any], where: str, input_schema: Any, problem: Any
) -> ScheduleManifest | None:
    ok = True

    def bad(fld: str, message: str) -> None:
        nonlocal ok
        ok = False
        problem(f"{where}.{fld}" if fld else where, message)

    for key in entry:
        if key not in SCHEDULE_KEYS:
            bad(str(key), f"unknown field; allowed: {', '.join(SCHEDULE_KEYS)}")
    name = entry.get("name", where.replace("schedules[", "schedule-").rstrip("]"))
    if not isinstance(name, str) or not SCHEDULE_NAME.match(name):
        bad("name", "must match ^[a-z0-9][a-z0-9_-]{0,62}$")
    cron, timezone = entry.get("cron"), entry.get("timezone", "UTC")
    if not isinstance(cron, str) or not isinstance(timezone, str):
        bad("cron", "required: a cron expression (and timezone, an IANA name) as strings")
    else:
        try:
            Cron.parse(cron, timezone)
        except CronError as exc:
            bad(exc.field, exc.message)
    inputs = entry.get("inputs", {})
    if not isinstance(inputs, dict):
        bad("inputs", "must be a mapping: the job's inputs")
    elif (
        isinstance(input_schema, dict | bool)
        and schema_problem(input_schema) is None
        and (found := validate(input_schema, inputs, root=("inputs",)))
    ):
        bad(
            "inputs",
            f"do not match the skill's input_schema: {found[0].message} at {found[0].pointer}",
        )
    missed = entry.get("missed", "skip")
    if missed not in ("skip", "catch_up"):
        bad("missed", "must be skip (the default) or catch_up")
    limit = entry.get("catch_up_limit", 1 if missed == "catch_up" else 0)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_CATCH_UP:
        bad("catch_up_limit", f"must be a whole number from 0 to {MAX_CATCH_UP}")
    if not ok:
        return None
    return ScheduleManifest(
        name=name,
        cron=cron,
        timezone=timezone,
        inputs=inputs,
        missed=missed,
        catch_up_limit=limit,
    )
