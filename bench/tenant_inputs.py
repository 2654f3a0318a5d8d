"""What bounding tenant input costs, and what it saves.

* **pattern**: ``^(a+)+$`` against ``"a" * n + "!"``, on RE2 through the platform's validator,
  and on Python's backtracking ``re`` for small ``n`` (each step of ``n`` doubles its time;
  at 48 it would take days);
* **large input**: a 1 MiB object checked against a schema with patterns, as the gateway does
  (in a worker thread above 64 KiB);
* **client number**: ``"1e30000000"`` refused by ``client_fraction``, against the
  ``Fraction(Decimal(...))`` it replaced, given one second;
* **rate limit**: one token bucket decision, the cost added to every request with a key.

    .venv/bin/python bench/tenant_inputs.py [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import statistics
import sys
import time
import uuid
from decimal import Decimal
from fractions import Fraction
from typing import Any

from puras_common.numbers import NumberError, client_fraction
from puras_common.schemas import validate
from puras_gateway.quotas import RateLimiter

EVIL = "^(a+)+$"


def _timed(fn: Any, runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 4),
        "max_ms": round(samples[-1], 4),
        "runs": runs,
    }


def patterns() -> dict[str, Any]:
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": EVIL}}}
    on_re2 = {
        str(n): _timed(lambda n=n: validate(schema, {"code": "a" * n + "!"}), 50)
        for n in (24, 48, 10_000)
    }
    backtracking = {}
    compiled = re.compile(EVIL)
    for n in (16, 18, 20, 22):
        backtracking[str(n)] = _timed(lambda n=n: compiled.search("a" * n + "!"), 3)
    return {"re2_validator": on_re2, "python_re": backtracking}


def large_input() -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "rows": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"id": {"type": "string", "pattern": "^[a-f0-9-]{36}$"}},
                    "patternProperties": {"^x-": {"type": "string"}},
                },
            }
        },
    }
    rows = [{"id": str(uuid.uuid4()), "x-note": "n" * 20} for _ in range(14_000)]
    size = len(json.dumps({"rows": rows}))
    return {"bytes": size, **_timed(lambda: validate(schema, {"rows": rows}), 5)}


def _old_fraction(text: str) -> None:
    Fraction(Decimal(text))


def numbers() -> dict[str, Any]:
    def refused() -> None:
        try:
            client_fraction("1e30000000", pointer="/units")
        except NumberError:
            return
        raise AssertionError("accepted")

    bounded = _timed(refused, 1000)
    # The arithmetic it replaced, in a child given one second.
    child = multiprocessing.Process(target=_old_fraction, args=("1e30000000",))
    start = time.perf_counter()
    child.start()
    child.join(1.0)
    unbounded_done = not child.is_alive()
    if child.is_alive():
        child.kill()
        child.join()
    return {
        "client_fraction_refusal": bounded,
        "fraction_of_decimal_1e30000000": {
            "finished_within_1s": unbounded_done,
            "waited_ms": round((time.perf_counter() - start) * 1000, 1),
        },
    }


def rate_limit() -> dict[str, Any]:
    limiter = RateLimiter(burst=300, per_second=50.0)
    keys = [uuid.uuid4() for _ in range(1000)]
    runs = 200_000
    start = time.perf_counter()
    for i in range(runs):
        limiter.take(keys[i % 1000])
    per_call_us = (time.perf_counter() - start) / runs * 1e6
    return {"take_us": round(per_call_us, 3), "keys": len(keys), "calls": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    report = {
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "patterns": patterns(),
        "large_input": large_input(),
        "numbers": numbers(),
        "rate_limit": rate_limit(),
        "loadavg_at_end": os.getloadavg(),
    }
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
