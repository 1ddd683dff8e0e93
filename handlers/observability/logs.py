"""Logging, configured once by the CLI: JSON lines for machines, a plain format on a terminal.

Each JSON line has time, level, logger and message, the ids of the command or event being
handled (bound with `bind`, carried by contextvars across awaits) and, when a trace is active,
its trace and span ids, so a log line leads to its trace. An exception stays on the same line."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import traceback
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from opentelemetry import trace

_NONE: Mapping[str, Any] = MappingProxyType({})
_bound: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("agentledger_log_fields", default=_NONE)
EXTRA_FIELDS = ("tenant", "command", "command_id", "event_id", "event_type", "position", "consumer")


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add these fields to every log line written inside the block (and the tasks it awaits)."""
    token = _bound.set({**_bound.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_bound.get(),
        }
        for key in EXTRA_FIELDS:
            if key in record.__dict__:
                line[key] = record.__dict__[key]
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"], line["span_id"] = f"{span.trace_id:032x}", f"{span.span_id:016x}"
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            line["error"] = f"{type(error).__name__}: {error}"
            line["traceback"] = "".join(traceback.format_exception(error)).rstrip()
        return json.dumps(line, default=str)


class HumanFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s%(bound)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        fields = {**_bound.get(), **{k: record.__dict__[k] for k in EXTRA_FIELDS if k in record.__dict__}}
        record.bound = "".join(f" {k}={v}" for k, v in fields.items())
        return super().format(record)


def configure(fmt: str = "auto", level: str = "info") -> None:
    """`fmt`: json, human, or auto (human when stderr is a terminal). Replaces earlier handlers."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else HumanFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
