"""The peer users would pick instead: Celery with Redis as broker and result backend.

``echo`` runs the function in the worker process; ``echo_subprocess`` runs it in a fresh
interpreter per task (absolute interpreter path, ``-I -S``, JSON over pipes), the isolation
Puras gives every job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from celery import Celery

BROKER = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SKILL_DIR = Path(__file__).resolve().parent / "projects" / "echo" / "skills" / "echo"

app = Celery("bench", broker=BROKER, backend=BROKER)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=4,
    task_acks_late=False,
    broker_connection_retry_on_startup=True,
)

_RUN = (
    "import json, sys; sys.path.insert(0, sys.argv[1]); import main; "
    "sys.stdout.write(json.dumps(main.run(json.loads(sys.stdin.read()))))"
)


@app.task(name="echo")
def echo(inputs: dict) -> dict:
    sys.path.insert(0, str(SKILL_DIR)) if str(SKILL_DIR) not in sys.path else None
    import main  # the same echo skill Puras runs

    return main.run(inputs)


@app.task(name="echo_subprocess")
def echo_subprocess(inputs: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _RUN, str(SKILL_DIR)],
        input=json.dumps(inputs),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)
