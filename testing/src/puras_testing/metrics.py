"""A service's Prometheus metrics as a test reads them, from its ops listener."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from puras_testing.platform import Platform


async def scrape(platform: Platform, service: str) -> dict[str, list[Any]]:
    """``{sample name: [(labels, value), …]}`` from the service's ``/metrics``."""
    url = platform.config.ops_url(service)
    assert url, f"{service} has no ops listener"
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    assert name in samples, f"{name} not exported; have {sorted(samples)[:50]}"
    return float(sum(v for have, v in samples[name] if labels.items() <= have.items()))
