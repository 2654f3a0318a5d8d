"""Tenant schemas: every regular expression runs on RE2 (linear time), a pattern RE2 cannot run
is refused with its pointer, and the boolean schemas are schemas like any other."""

from __future__ import annotations

import pytest
from puras_common.schemas import schema_problem, validate

EVIL = "^(a+)+$"
"""Exponential on a backtracking engine: ``"a" * 48 + "!"`` would take days."""
ATTACK = "a" * 48 + "!"


def test_pattern_is_matched_in_linear_time() -> None:
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": EVIL}}}
    [problem] = validate(schema, {"code": ATTACK}, root=("inputs",))
    assert problem.pointer == "/inputs/code"
    assert "does not match" in problem.message
    assert validate(schema, {"code": "a" * 10_000}) == []


@pytest.mark.parametrize("closing", ["additionalProperties", "unevaluatedProperties"])
def test_pattern_properties_and_what_they_leave_over_run_on_re2(closing: str) -> None:
    schema = {
        "type": "object",
        "patternProperties": {EVIL: {"type": "integer"}},
        closing: False,
    }
    problems = validate(schema, {ATTACK: 1, "aaa": "x"})
    assert [p.pointer for p in problems] == ["", "/aaa"]
    assert ATTACK in problems[0].message
    assert validate(schema, {"aaa": 1}) == []


def test_regex_format_of_an_instance_is_checked_by_re2() -> None:
    assert validate({"format": "regex"}, "^(a+)+$") == []
    [problem] = validate({"format": "regex"}, "(?=a)")
    assert "regex" in problem.message


@pytest.mark.parametrize(
    ("schema", "pointer"),
    [
        ({"properties": {"code": {"pattern": "(?=x)"}}}, "/properties/code/pattern"),
        ({"items": {"pattern": "(a)\\1"}}, "/items/pattern"),
        ({"patternProperties": {"(?<=a)b": {}}}, "/patternProperties"),
        ({"pattern": "x" * 5000}, "/pattern"),
    ],
)
def test_a_pattern_re2_cannot_run_is_refused_with_its_pointer(
    schema: dict[str, object], pointer: str
) -> None:
    problem = schema_problem(schema)
    assert problem is not None
    assert problem.pointer == pointer
    assert "RE2" in problem.message


def test_boolean_schemas_are_valid_schemas() -> None:
    assert schema_problem(True) is None
    assert schema_problem(False) is None
    assert validate(True, {"anything": [1, 2]}) == []
    [problem] = validate(False, {"x": 1}, root=("inputs",))
    assert problem.pointer == "/inputs"
    problem_text = schema_problem(1)
    assert problem_text is not None and "object or a boolean" in problem_text.message
