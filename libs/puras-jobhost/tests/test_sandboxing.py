"""Whether tenant code runs sandboxed: never silently unsandboxed in production."""

from __future__ import annotations

from typing import Any

import pytest
from puras_jobhost.sandboxing import UNSANDBOXED_WARNING, SandboxUnavailable, decide_sandbox


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append(("info", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append(("warning", event, kw))


def decide(mode: Any, environment: str, available: bool) -> tuple[bool, Log]:
    log = Log()
    sandboxed = decide_sandbox(
        mode, environment=environment, uid=None, gid=None, log=log, available=available
    )
    return sandboxed, log


@pytest.mark.parametrize("environment", ["development", "production"])
@pytest.mark.parametrize("mode", ["auto", "bwrap"])
def test_bubblewrap_is_used_wherever_it_works(mode: str, environment: str) -> None:
    sandboxed, log = decide(mode, environment, True)
    assert sandboxed and not [line for line in log.lines if line[0] == "warning"]


def test_production_refuses_to_run_tenant_code_unsandboxed() -> None:
    with pytest.raises(SandboxUnavailable, match="PURAS_SANDBOX=none"):
        decide("auto", "production", False)
    with pytest.raises(SandboxUnavailable, match="PURAS_SANDBOX=bwrap"):
        decide("bwrap", "development", False)


def test_development_runs_unsandboxed_and_says_so_loudly() -> None:
    sandboxed, log = decide("auto", "development", False)
    assert not sandboxed
    assert log.lines == [
        ("warning", UNSANDBOXED_WARNING, {"reason": "bubblewrap is not available"})
    ]
    assert "UNSANDBOXED" in UNSANDBOXED_WARNING


@pytest.mark.parametrize("environment", ["development", "production"])
def test_the_operator_may_say_none_explicitly(environment: str) -> None:
    sandboxed, log = decide("none", environment, True)
    assert not sandboxed
    assert log.lines == [("warning", UNSANDBOXED_WARNING, {"reason": "PURAS_SANDBOX=none"})]
