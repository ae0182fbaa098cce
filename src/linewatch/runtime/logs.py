"""Structured logging: one line per event, with the current trace and span ids.

``setup_logging`` configures the root logger once per process. JSON lines by default
(for collectors), a compact text format for humans (``log_format: text``). Extra fields
passed with ``logger.info("...", extra={"fields": {...}})`` are merged into the line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from opentelemetry import trace

__all__ = ["setup_logging"]

_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _trace_ids() -> tuple[str, str]:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return "", ""
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        trace_id, span_id = _trace_ids()
        if trace_id:
            line["trace_id"] = trace_id
            line["span_id"] = span_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key != "fields" and not key.startswith("_"):
                line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level service logger: message key=value ...`` for people."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%H:%M:%S", time.localtime(record.created))
        parts = [f"{ts} {record.levelname[:4]:4} {self.service:9} {record.getMessage()}"]
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            parts.extend(f"{k}={v}" for k, v in fields.items())
        trace_id, _ = _trace_ids()
        if trace_id:
            parts.append(f"trace={trace_id[:12]}")
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(service: str, *, level: str = "INFO", fmt: str = "json") -> None:
    """Send every logger of this process to stderr as structured lines.

    Args:
        service: the service name written on every line.
        level: the root level name (``DEBUG``, ``INFO`` ...).
        fmt: ``json`` or ``text``.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Chatty third-party loggers stay at WARNING unless we debug.
    if level.upper() != "DEBUG":
        for name in ("gmqtt", "amqtt", "transitions", "httpx", "httpcore", "aiosqlite"):
            logging.getLogger(name).setLevel(logging.WARNING)
