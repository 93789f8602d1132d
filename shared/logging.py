"""structlog JSON lines carrying service, trace_id, span_id and (where bound) programme_id."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from shared.telemetry import trace_ids


def _add_trace(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    tid, sid = trace_ids()
    if tid:
        event.setdefault("trace_id", tid)
        event.setdefault("span_id", sid)
    return event


def setup_logging(service: str, level: str = "INFO", file: str = "") -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if file:
        handlers.append(logging.FileHandler(file))
    logging.basicConfig(level=level.upper(), format="%(message)s", handlers=handlers, force=True)
    for noisy in ("aiokafka", "pymongo", "faststream", "uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_trace,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str = "mptf") -> Any:
    return structlog.get_logger(name)
