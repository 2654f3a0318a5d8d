"""JSON Schema (2020-12) checks whose failures are listed with JSON pointers.

Schemas come from tenants (``input_schema``, ``output_schema`` and tool schemas in
``skill.yaml``), and so do the instances checked against them, so both are hostile. Their
regular expressions (``pattern``, ``patternProperties`` and the ``regex`` format) run on RE2,
whose matching time is linear in the input: Python's backtracking engine takes exponential
time on ``^(a+)+$`` against ``"a" * 48 + "!"``, and a check runs in a service's event loop. A
pattern RE2 cannot compile (look-around, back-references) is refused when the skill is pushed.

This is the one validator factory for tenant schemas: the gateway, both runners and the agent
loop's tools all check through :func:`validate` or :func:`validate_off_loop`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import jsonschema
import jsonschema._utils
import orjson
import re2  # type: ignore[import-untyped]  # google-re2 ships no type information
from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator

from puras_common.api import ErrorDetail, json_pointer

MAX_ERRORS: Final = 50
MAX_PATTERN_CHARS: Final = 4096
"""The longest regular expression a schema may hold."""
PATTERN_MEMORY_BYTES: Final = 1 << 20
"""RE2's memory budget for one compiled pattern; a pattern that needs more is refused."""
OFF_LOOP_BYTES: Final = 64 * 1024
"""Instances larger than this (as JSON) are validated in a worker thread, off the event loop."""

Schema = dict[str, Any] | bool


class PatternError(ValueError):
    """A regular expression RE2 cannot run."""

    def __init__(self, pattern: str, reason: str) -> None:
        super().__init__(f"{reason} (RE2 has no look-around and no back-references)")
        self.pattern = pattern
        self.reason = reason


def _options() -> re2.Options:
    options = re2.Options()
    options.max_mem = PATTERN_MEMORY_BYTES
    options.log_errors = False
    return options


_OPTIONS: Final = _options()


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> Any:
    """``pattern`` compiled by RE2; :class:`PatternError` when RE2 cannot run it."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(
            pattern, f"the pattern is {len(pattern)} characters; the limit is {MAX_PATTERN_CHARS}"
        )
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        raise PatternError(
            pattern, reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        ) from None


def _matches(pattern: str, text: str) -> bool:
    return compile_pattern(pattern).search(text) is not None


def _pattern(
    validator: Validator, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    try:
        if not _matches(pattern, instance):
            yield ValidationError(f"{instance!r} does not match {pattern!r}")
    except PatternError as exc:
        yield ValidationError(f"the schema's pattern {pattern!r} cannot be run: {exc}")


def _pattern_properties(
    validator: Validator, patterns: dict[str, Any], instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        try:
            compile_pattern(pattern)
        except PatternError as exc:
            yield ValidationError(f"the schema's pattern {pattern!r} cannot be run: {exc}")
            continue
        for key, value in instance.items():
            if _matches(pattern, key):
                yield from validator.descend(  # type: ignore[attr-defined]  # on every jsonschema validator, not in its protocol
                    value, subschema, path=key, schema_path=pattern
                )


class _Re2Search:
    """Stands in for ``re`` inside ``jsonschema._utils``: its helpers for
    ``additionalProperties`` and ``unevaluatedProperties`` search property names with the
    ``patternProperties`` of the tenant's schema, through that module's ``re.search``."""

    @staticmethod
    def search(pattern: str, string: str) -> Any:
        try:
            return compile_pattern(pattern).search(string)
        except PatternError:
            return None  # reported by the patternProperties keyword itself

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)


setattr(jsonschema._utils, "re", _Re2Search())  # noqa: B010  # the module's only use of re is search()

FORMAT_CHECKER: Final = FormatChecker()
for _name, _check in Draft202012Validator.FORMAT_CHECKER.checkers.items():
    if _name != "regex":
        FORMAT_CHECKER.checkers[_name] = _check


@FORMAT_CHECKER.checks("regex", raises=PatternError)
def _is_regex(instance: object) -> bool:
    if isinstance(instance, str):
        compile_pattern(instance)
    return True


TenantValidator: Final[type[Validator]] = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    {"pattern": _pattern, "patternProperties": _pattern_properties},
    format_checker=FORMAT_CHECKER,
)
"""Draft 2020-12, with every regular expression on RE2."""


_METASCHEMA: Final = Draft202012Validator(
    Draft202012Validator.META_SCHEMA, format_checker=FORMAT_CHECKER
)
"""Checks a tenant's schema, its regular expressions compiled by RE2."""


@lru_cache(maxsize=1024)
def _validator(schema_json: str) -> Validator:
    validator: Validator = TenantValidator(orjson.loads(schema_json), format_checker=FORMAT_CHECKER)
    return validator


def validator_for(schema: Schema) -> Validator:
    """A cached validator (schemas repeat across jobs of one skill)."""
    return _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode())


def validate(
    schema: Schema, instance: Any, *, root: tuple[str | int, ...] = ()
) -> list[ErrorDetail]:
    """Every way ``instance`` breaks ``schema``, each at its pointer under ``root``; [] when valid."""
    errors = sorted(
        validator_for(schema).iter_errors(instance),
        key=lambda e: (list(e.absolute_path), e.message),
    )
    return [
        ErrorDetail(pointer=json_pointer((*root, *e.absolute_path)), message=e.message)
        for e in errors[:MAX_ERRORS]
    ]


async def validate_off_loop(
    schema: Schema, instance: Any, *, root: tuple[str | int, ...] = ()
) -> list[ErrorDetail]:
    """:func:`validate`, in a worker thread when ``instance`` is large, so that checking one
    big input never holds up the other requests a process serves."""
    if len(orjson.dumps(instance)) <= OFF_LOOP_BYTES:
        return validate(schema, instance, root=root)
    return await asyncio.to_thread(validate, schema, instance, root=root)


@dataclass(frozen=True)
class SchemaProblem:
    """Why a schema is refused, and where in it (a JSON pointer into the schema)."""

    message: str
    pointer: str

    def __str__(self) -> str:
        return f"{self.message} (at {self.pointer or '/'})"


def schema_problem(schema: Any) -> SchemaProblem | None:
    """Why ``schema`` is not a valid 2020-12 JSON Schema that the platform can run, or None.
    A regular expression RE2 cannot compile is named with its pointer."""
    if not isinstance(schema, dict | bool):
        return SchemaProblem(
            f"a JSON Schema must be an object or a boolean, not {type(schema).__name__}", ""
        )
    error = best_match(_METASCHEMA.iter_errors(schema))
    if error is None:
        return None
    where = json_pointer(error.absolute_path)
    if isinstance(error.cause, PatternError):
        return SchemaProblem(
            f"pattern {error.cause.pattern!r} is not a regular expression RE2 can run: {error.cause}",
            where,
        )
    return SchemaProblem(error.message, where)


__all__ = [
    "PatternError",
    "Schema",
    "SchemaProblem",
    "TenantValidator",
    "compile_pattern",
    "jsonschema",
    "schema_problem",
    "validate",
    "validate_off_loop",
    "validator_for",
]
