"""The in-job runtime's media and subagent calls refuse what cannot work before any request,
and stay standard-library only (jobs import them without the platform's packages)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from puras import PurasError, media, subagent

SDK = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "pass exactly one of target"),
        (("echo",), {"prompt": "x"}, "pass exactly one of target"),
        ((), {"prompt": "x", "version": 2}, "version pins a declared skill"),
        (("references/critic.md",), {"version": 1}, "version pins a declared skill"),
        (("echo",), {"version": 0}, "version must be a deployment version"),
        (("echo",), {"timeout": 0}, "timeout must be a positive number"),
        (("",), {}, "target must be a skill address"),
        ((), {"prompt": "  "}, "prompt must be a non-empty"),
    ],
)
def test_subagent_arguments_that_cannot_work_are_a_value_error(
    args: tuple, kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        subagent.run(*args, **kwargs)


def test_outside_a_job_the_calls_say_what_they_need(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PURAS_JOB_TOKEN", raising=False)
    with pytest.raises(
        PurasError,
        match=r"puras\.media runs inside a job: it needs PURAS_API_BASE and PURAS_JOB_TOKEN",
    ):
        media.run("google/imagen-4", {"prompt": "x"})
    with pytest.raises(PurasError, match=r"puras\.subagent runs inside a job"):
        subagent.run("echo", {"text": "x"})


def test_the_runtime_modules_import_with_the_standard_library_alone() -> None:
    code = "import sys, puras, puras.media, puras.subagent; print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'puras_common', 'puras_media')))"
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env={"PYTHONPATH": str(SDK)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"
