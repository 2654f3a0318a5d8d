"""deploy/compose.yml cannot be run here (no container engine); it is checked by reading it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml
from puras_common.access import SERVICES, STATEFUL

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yml").read_text())


def test_every_service_runs_replicated_with_its_own_credentials() -> None:
    services = compose()["services"]
    for name in SERVICES:
        svc = services[name]
        assert svc["command"] == ["python", "-m", "puras_" + name.replace("-", "_")]
        assert svc["deploy"]["replicas"] >= 2, name
        env = svc["environment"]
        user = re.findall(r"nats://([^:]+):", env["PURAS_NATS_URL"])
        assert set(user) == {name}, f"{name} connects to NATS as {user}"
        assert len(re.findall(r"@nats-\d:4222", env["PURAS_NATS_URL"])) == 3
        if name in STATEFUL:
            assert env["PURAS_DATABASE_URL"].startswith(f"postgresql://puras_{name}:")
        else:
            assert "PURAS_DATABASE_URL" not in env, f"{name} keeps no state and gets no database"
        assert env["PURAS_STREAM_REPLICAS"] == "3" and env["PURAS_ENVIRONMENT"] == "production"


def test_three_nats_nodes_minio_postgres_and_provisioning() -> None:
    services = compose()["services"]
    assert {"nats-1", "nats-2", "nats-3", "postgres", "minio", "provision"} <= set(services)
    assert services["provision"]["command"] == ["puras", "admin", "provision", "--stream-replicas", "3"]
    cluster = (DEPLOY / "nats" / "cluster.conf").read_text()
    assert all(f"nats-route://nats-{i}:6222" in cluster for i in (1, 2, 3))
    assert "sync_interval: always" in cluster and "include ./users.conf" in cluster


def test_every_variable_has_an_example() -> None:
    text = (DEPLOY / "compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)\}", text))
    example = {line.split("=", 1)[0] for line in (DEPLOY / "env.example").read_text().splitlines() if "=" in line}
    assert used <= example, used - example


def test_nats_users_file_matches_the_access_model() -> None:
    generated = subprocess.run(
        [str(Path(sys.executable).parent / "puras"), "admin", "nats-config"], capture_output=True, text=True, check=True
    ).stdout
    assert (DEPLOY / "nats" / "users.conf").read_text() == generated, "regenerate with `puras admin nats-config`"
