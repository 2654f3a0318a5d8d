"""Writes the Grafana dashboards under ``dashboards/``: an overview and one per service.

The panels are code so they stay consistent (one datasource, the same rate windows, the
metric names of ``puras_common.observability``); ``tests/test_deploy.py`` checks that the
files are what this script writes and that every query names a metric the services export.

    python deploy/grafana/generate.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from puras_common.access import SERVICES

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "prometheus", "uid": "puras-prometheus"}


def panel(
    title: str, *exprs: str, unit: str = "short", legend: str = "", kind: str = "timeseries"
) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "expr": e,
                "legendFormat": legend,
                "datasource": DATASOURCE,
            }
            for i, e in enumerate(exprs)
        ],
    }


def http_panels(service: str) -> list[dict[str, Any]]:
    sel = f'service="{service}"'
    return [
        panel(
            "Requests/s by route and status",
            f"sum by (route, status) (rate(puras_http_requests_total{{{sel}}}[1m]))",
            unit="reqps",
            legend="{{route}} {{status}}",
        ),
        panel(
            "Request latency p99 by route",
            f"histogram_quantile(0.99, sum by (le, route) (rate(puras_http_request_seconds_bucket{{{sel}}}[5m])))",
            unit="s",
            legend="{{route}}",
        ),
        panel(
            "5xx/s",
            f'sum(rate(puras_http_requests_total{{{sel}, status=~"5.."}}[1m]))',
            unit="reqps",
        ),
    ]


def common_panels(service: str) -> list[dict[str, Any]]:
    return [
        panel("Ready instances", f'sum(puras_service_ready{{service="{service}"}})', kind="stat"),
        panel(
            "Outbox rows not yet published",
            f'max(puras_outbox_lag_rows{{service="{service.replace("-", "_")}"}})',
        ),
        panel(
            "Consumer lag (pending) by durable",
            f'max by (consumer) (puras_consumer_pending{{consumer=~"{service}-.*"}})',
            legend="{{consumer}}",
        ),
        panel(
            "Projection lag",
            f'max by (consumer) (puras_projection_lag_seconds{{consumer=~"{service}-.*"}})',
            unit="s",
            legend="{{consumer}}",
        ),
        panel(
            "Events applied/s",
            f'sum by (consumer) (rate(puras_events_applied_total{{consumer=~"{service}-.*"}}[1m]))',
            legend="{{consumer}}",
        ),
        panel(
            "Dead letters",
            f'sum by (consumer) (increase(puras_dead_letters_total{{consumer=~"{service}-.*"}}[1h]))',
            legend="{{consumer}}",
        ),
    ]


SPECIFIC: dict[str, list[dict[str, Any]]] = {
    "gateway": [
        panel("SSE streams open", "sum(puras_sse_streams_open)"),
    ],
    "scheduler": [
        panel(
            "Jobs by state and kind",
            "max by (state, kind) (puras_jobs)",
            legend="{{state}} {{kind}}",
        ),
        panel(
            "Queue depth by waiting reason",
            "max by (reason) (puras_queue_depth)",
            legend="{{reason}}",
        ),
        panel(
            "Dispatch latency p50 / p99",
            "histogram_quantile(0.5, sum by (le) (rate(puras_dispatch_latency_seconds_bucket[5m])))",
            "histogram_quantile(0.99, sum by (le) (rate(puras_dispatch_latency_seconds_bucket[5m])))",
            unit="s",
        ),
        panel(
            "Jobs finished/s by state",
            "sum by (state, kind) (rate(puras_jobs_finished_total[1m]))",
            legend="{{state}} {{kind}}",
        ),
        panel(
            "Schedule fire times/s (duplicate: decided again, not fired)",
            "sum by (outcome) (rate(puras_schedule_fires_total[1m]))",
            legend="{{outcome}}",
        ),
        panel(
            "Schedule lateness p99",
            "histogram_quantile(0.99, sum by (le) (rate(puras_schedule_lateness_seconds_bucket[5m])))",
            unit="s",
        ),
    ],
    "webhooks": [
        panel(
            "Attempts/s by outcome",
            "sum by (outcome) (rate(puras_webhook_attempts_total[1m]))",
            legend="{{outcome}}",
        ),
        panel(
            "Receiver latency p50 / p99",
            "histogram_quantile(0.5, sum by (le) (rate(puras_webhook_attempt_seconds_bucket[5m])))",
            "histogram_quantile(0.99, sum by (le) (rate(puras_webhook_attempt_seconds_bucket[5m])))",
            unit="s",
        ),
        panel("Endpoints disabled", "sum(increase(puras_webhooks_disabled_total[1h]))"),
    ],
    "function-runner": [
        panel("Jobs in flight", 'sum(puras_work_in_flight{consumer=~"function-runner-.*"})'),
        panel(
            "Job duration p50 / p99",
            'histogram_quantile(0.5, sum by (le) (rate(puras_job_duration_seconds_bucket{consumer=~"function-runner-.*"}[5m])))',
            'histogram_quantile(0.99, sum by (le) (rate(puras_job_duration_seconds_bucket{consumer=~"function-runner-.*"}[5m])))',
            unit="s",
        ),
        panel(
            "Sandbox spawn p99",
            "histogram_quantile(0.99, sum by (le) (rate(puras_sandbox_spawn_seconds_bucket[5m])))",
            unit="s",
        ),
    ],
    "agent-runner": [
        panel("Agent jobs in flight", 'sum(puras_work_in_flight{consumer=~"agent-runner-.*"})'),
        panel(
            "Provider latency p99 by provider",
            "histogram_quantile(0.99, sum by (le, provider) (rate(puras_provider_request_seconds_bucket[5m])))",
            unit="s",
            legend="{{provider}}",
        ),
        panel(
            "Provider errors/s",
            "sum by (provider, error) (rate(puras_provider_errors_total[5m]))",
            legend="{{provider}} {{error}}",
        ),
    ],
    "billing": [
        panel(
            "Ledger entries/s by kind",
            "sum by (kind) (rate(puras_ledger_entries_total[1m]))",
            legend="{{kind}}",
        ),
        panel(
            "Billed usage by model (USD/h)",
            "sum by (model) (rate(puras_usage_billed_micros_total[1h])) * 3600 / 1e6",
            unit="currencyUSD",
            legend="{{model}}",
        ),
        panel(
            "Tokens/s by model",
            "sum by (model, direction) (rate(puras_usage_tokens_total[5m]))",
            legend="{{model}} {{direction}}",
        ),
    ],
}


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, p in enumerate(panels):
        out.append(
            {**p, "id": i + 1, "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8}}
        )
    return out


def dashboard(uid: str, title: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["puras"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "editable": True,
        "panels": layout(panels),
    }


def dashboards() -> dict[str, dict[str, Any]]:
    out = {}
    for service in SERVICES:
        panels = [*SPECIFIC.get(service, [])]
        if service in ("gateway", "deployments", "drive"):
            panels += http_panels(service)
        panels += common_panels(service)
        out[f"{service}.json"] = dashboard(f"puras-{service}", f"Puras: {service}", panels)
    out["overview.json"] = dashboard(
        "puras-overview",
        "Puras: overview",
        [
            panel(
                "Ready instances by service",
                "sum by (service) (puras_service_ready)",
                legend="{{service}}",
            ),
            panel(
                "Queue depth by waiting reason",
                "max by (reason) (puras_queue_depth)",
                legend="{{reason}}",
            ),
            panel("Jobs by state", "max by (state) (puras_jobs)", legend="{{state}}"),
            panel(
                "Jobs finished/s by state",
                "sum by (state) (rate(puras_jobs_finished_total[1m]))",
                legend="{{state}}",
            ),
            panel(
                "API requests/s by status",
                'sum by (status) (rate(puras_http_requests_total{service="gateway"}[1m]))',
                legend="{{status}}",
            ),
            panel(
                "Dispatch latency p99",
                "histogram_quantile(0.99, sum by (le) (rate(puras_dispatch_latency_seconds_bucket[5m])))",
                unit="s",
            ),
            panel(
                "Consumer lag by durable",
                "max by (consumer) (puras_consumer_pending)",
                legend="{{consumer}}",
            ),
            panel(
                "Outbox lag by service",
                "max by (service) (puras_outbox_lag_rows)",
                legend="{{service}}",
            ),
            panel(
                "Outbox rows held back by a transaction left open",
                "max by (service) (puras_outbox_held_seconds)",
                legend="{{service}}",
                unit="s",
            ),
            panel("Ledger entries/s", "sum(rate(puras_ledger_entries_total[1m]))"),
            panel(
                "Dead letters (1h)",
                "sum by (consumer) (increase(puras_dead_letters_total[1h]))",
                legend="{{consumer}}",
            ),
        ],
    )
    return out


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    for name, board in dashboards().items():
        (HERE / "dashboards" / name).write_text(render(board))
