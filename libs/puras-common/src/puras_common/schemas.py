"""JSON Schema (2020-12) checks whose failures are listed with JSON pointers."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from puras_common.api import ErrorDetail, json_pointer

MAX_ERRORS = 50


@lru_cache(maxsize=1024)
def _validator(schema_json: str) -> Draft202012Validator:
    import orjson

    return Draft202012Validator(orjson.loads(schema_json), format_checker=Draft202012Validator.FORMAT_CHECKER)


def validator_for(schema: dict[str, Any]) -> Draft202012Validator:
    """A cached validator (schemas repeat across jobs of one skill)."""
    import orjson

    return _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode())


def validate(schema: dict[str, Any], instance: Any, *, root: tuple[str | int, ...] = ()) -> list[ErrorDetail]:
    """Every way ``instance`` breaks ``schema``, each at its pointer under ``root``; [] when valid."""
    errors = sorted(validator_for(schema).iter_errors(instance), key=lambda e: (list(e.absolute_path), e.message))
    return [
        ErrorDetail(pointer=json_pointer((*root, *e.absolute_path)), message=e.message)
        for e in errors[:MAX_ERRORS]
    ]


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` is not a valid 2020-12 JSON Schema, or None."""
    if not isinstance(schema, dict | bool):
        return f"a JSON Schema must be an object, not {type(schema).__name__}"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = json_pointer(exc.absolute_path) or "/"
        return f"{exc.message} (at {where})"
    return None


__all__ = ["jsonschema", "schema_problem", "validate", "validator_for"]
