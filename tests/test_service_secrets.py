"""Each service is given only the secrets it uses (``puras_common.access.SERVICE_SECRETS``), and
in production refuses to start while one of them is missing or the development default."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest
from puras_cli.platform import MODULES
from puras_common.access import (
    CREDENTIAL_VARIABLES,
    SERVICE_SECRETS,
    SERVICES,
    Credentials,
)
from puras_common.settings import ServiceSettings

RUNNER_FORBIDDEN = {"PURAS_ADMIN_TOKEN", "PURAS_SECRETS_KEY", "PURAS_DRIVE_SIGNING_KEY"}


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"{MODULES[service]}.settings")
    [cls] = [
        c
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, ServiceSettings) and c.service == service
    ]
    return cls


def variable_of(service: str, field: str) -> str:
    """The environment variable the table uses for a settings field (``PURAS_<FIELD>``, or the
    service's own ``PURAS_<SERVICE>_<FIELD>`` when that is the table's name)."""
    specific = f"PURAS_{service.upper().replace('-', '_')}_{field.upper()}"
    return specific if specific in CREDENTIAL_VARIABLES else f"PURAS_{field.upper()}"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("PURAS_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_runners_hold_no_admin_token_secrets_key_or_signing_key() -> None:
    for runner in ("function-runner", "agent-runner"):
        assert not RUNNER_FORBIDDEN & set(SERVICE_SECRETS[runner])
        assert not RUNNER_FORBIDDEN & set(Credentials.generate().secrets_env(runner))
    for service in ("scheduler", "billing", "webhooks"):
        assert SERVICE_SECRETS[service] == ()


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_demands_in_production_exactly_the_secrets_it_is_given(
    service: str, clean_env: pytest.MonkeyPatch
) -> None:
    cls = settings_class(service)
    demanded = {variable_of(service, f) for f in cls.secret_fields}
    given = {v for v in SERVICE_SECRETS[service] if v in CREDENTIAL_VARIABLES}
    assert demanded == given
    secrets = Credentials.generate().secrets_env(service)
    for name, value in secrets.items():
        clean_env.setenv(name, value)
    assert cls.load(environment="production").environment == "production"
    for name in secrets:
        clean_env.delenv(name)
        with pytest.raises(ValueError, match="production refuses development defaults"):
            cls.load(environment="production")
        clean_env.setenv(name, secrets[name])


@pytest.mark.parametrize("service", ["gateway", "function-runner"])
def test_a_production_process_with_development_defaults_does_not_start(service: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PURAS_")}
    env["PURAS_ENVIRONMENT"] = "production"
    env["PURAS_NATS_URL"] = "nats://127.0.0.1:1"  # never reached: settings are checked first
    proc = subprocess.run(
        [sys.executable, "-m", MODULES[service]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "production refuses development defaults" in proc.stderr
