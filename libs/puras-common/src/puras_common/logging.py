"""Structured logs: one JSON object per line, with ``service`` and, inside a job's work,
``workspace_id`` and ``job_id`` bound through context variables."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, merge_contextvars

__all__ = ["bind_contextvars", "bound_contextvars", "configure_logging", "get_logger"]


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure_logging(service: str, *, level: str = "INFO", fmt: str = "json") -> None:
    """Configure structlog and the stdlib root logger for one service process."""
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    shared: list[Any] = [
        merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    bind_contextvars(service=service)
    # Libraries that log through the stdlib (uvicorn, asyncio, nats) go through structlog too.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                lambda _l, _m, ev: {**ev, "service": service},
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger; ``name`` becomes the ``component`` key."""
    # Initial values keep the proxy lazy, so a module-level logger picks up the configuration
    # made later in __main__.
    logger: structlog.stdlib.BoundLogger = (
        structlog.get_logger(component=name) if name else structlog.get_logger()
    )
    return logger
