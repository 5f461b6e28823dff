"""Structured logs: one JSON object a line, each with the request it belongs to.

:func:`configure` installs the formatter on the root logger (``gsomia node serve`` calls it);
:data:`request_context` is set by the API's request middleware, so every record logged while a
request is handled names its ``request_id`` (and, once authenticated, its ``actor``). A record
carries what the code put in its message and its ``extra`` fields: the code logs ids, counts and
outcomes, never a token, a password or a payload.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter", "configure", "request_context"]

# the request being handled: {"request_id": ..., "actor": ...}; a dict so a handler running in a
# worker thread (a copy of the context) can name the actor for the middleware's line
request_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "gsomia_request", default=None
)

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON: time, level, logger, message, the request, the extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = request_context.get()
        if context:
            line.update(context)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["error"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: int = logging.INFO, stream: Any = None) -> None:
    """Log JSON lines to ``stream`` (standard error by default) from the root logger at ``level``."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
