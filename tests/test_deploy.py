"""deploy/compose.yml cannot be run here (no container engine); it is checked by reading it."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml
from puras_common.access import SECRET_VARIABLES, SERVICE_SECRETS, SERVICES, STATEFUL

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


def test_each_service_gets_only_the_secrets_the_access_table_gives_it() -> None:
    services = compose()["services"]
    for name in SERVICES:
        given = {v for v in services[name]["environment"] if v in SECRET_VARIABLES}
        assert given == set(SERVICE_SECRETS[name]), name
    for runner in ("function-runner", "agent-runner"):
        env = services[runner]["environment"]
        assert not {"PURAS_ADMIN_TOKEN", "PURAS_SECRETS_KEY", "PURAS_DRIVE_SIGNING_KEY"} & set(env)


def test_three_nats_nodes_minio_postgres_and_provisioning() -> None:
    services = compose()["services"]
    assert {"nats-1", "nats-2", "nats-3", "postgres", "minio", "provision"} <= set(services)
    assert services["provision"]["command"] == [
        "puras",
        "admin",
        "provision",
        "--stream-replicas",
        "3",
    ]
    cluster = (DEPLOY / "nats" / "cluster.conf").read_text()
    assert all(f"nats-route://nats-{i}:6222" in cluster for i in (1, 2, 3))
    assert "sync_interval: always" in cluster and "include ./users.conf" in cluster


def test_every_variable_has_an_example() -> None:
    text = (DEPLOY / "compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)\}", text))
    example = {
        line.split("=", 1)[0]
        for line in (DEPLOY / "env.example").read_text().splitlines()
        if "=" in line
    }
    assert used <= example, used - example


def test_nats_users_file_matches_the_access_model() -> None:
    generated = subprocess.run(
        [str(Path(sys.executable).parent / "puras"), "admin", "nats-config"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (DEPLOY / "nats" / "users.conf").read_text() == generated, (
        "regenerate with `puras admin nats-config`"
    )


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads((DEPLOY / "schema" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(compose())
    ]
    assert errors == []
    broken = compose()
    broken["services"]["gateway"]["restarts"] = "always"  # not a Compose key
    broken["services"]["scheduler"]["stop_grace_period"] = {"seconds": 45}
    assert len(list(validator.iter_errors(broken))) == 2  # the check does catch mistakes


def documented_environment() -> set[tuple[str, str]]:
    """``(variable, service)`` from the table in docs/operations.md."""
    text = (DEPLOY.parent / "docs" / "operations.md").read_text()
    table = text.split("### Environment of each service", 1)[1]
    pairs = set()
    for row in re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", table, flags=re.M):
        variable, services = row
        names = SERVICES if services.strip() == "all" else [s.strip() for s in services.split(",")]
        pairs |= {(variable, name) for name in names}
    return pairs


def test_each_services_environment_is_the_one_documented() -> None:
    services = compose()["services"]
    used = {(variable, name) for name in SERVICES for variable in services[name]["environment"]}
    documented = documented_environment()
    assert used - documented == set(), "in compose.yml, not in docs/operations.md"
    assert documented - used == set(), "in docs/operations.md, not in compose.yml"


def test_prometheus_scrapes_every_service_and_grafana_has_their_dashboards() -> None:
    services = compose()["services"]
    assert {"prometheus", "grafana"} <= set(services)
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [names] = [d["names"] for d in config["scrape_configs"][0]["dns_sd_configs"]]
    assert set(names) == set(SERVICES)
    for name in SERVICES:
        assert services[name]["environment"]["PURAS_OPS_PORT"] == str(
            config["scrape_configs"][0]["dns_sd_configs"][0]["port"]
        )
    boards = {p.name for p in (DEPLOY / "grafana" / "dashboards").glob("*.json")}
    assert boards == {f"{s}.json" for s in SERVICES} | {"overview.json"}


DASHBOARD_SCHEMA = {
    "type": "object",
    "required": ["uid", "title", "panels", "schemaVersion"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[a-z0-9-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "schemaVersion": {"type": "integer", "minimum": 30},
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "type", "title", "gridPos", "targets", "datasource"],
                "properties": {
                    "type": {"enum": ["timeseries", "stat", "gauge", "table"]},
                    "gridPos": {
                        "type": "object",
                        "required": ["h", "w", "x", "y"],
                        "properties": {"w": {"type": "integer", "maximum": 24}},
                    },
                    "datasource": {"const": {"type": "prometheus", "uid": "puras-prometheus"}},
                    "targets": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "object", "required": ["refId", "expr"]},
                    },
                },
            },
        },
    },
}


def test_dashboards_load_and_query_only_metrics_the_services_export() -> None:
    from puras_common.observability import REGISTRY

    exported = set()
    for family in REGISTRY.collect():
        exported.add(family.name)
        exported |= {family.name + s for s in ("_total", "_bucket", "_count", "_sum")}
    generator = _generator()
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        jsonschema.validate(board, DASHBOARD_SCHEMA)
        assert path.read_text() == generator.render(generator.dashboards()[path.name]), (
            f"{path.name} differs from what deploy/grafana/generate.py writes"
        )
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        for target in (t for p in board["panels"] for t in p["targets"]):
            names = set(re.findall(r"\b(puras_[a-z_]+)", target["expr"]))
            assert names and names <= exported, (path.name, names - exported)
    provisioning = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert provisioning["datasources"][0]["uid"] == "puras-prometheus"


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("generate", DEPLOY / "grafana" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
