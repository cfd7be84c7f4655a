"""Logging setup with a per-call id on every line (``call=<id>`` in text, ``"call"`` in JSON).

Two ways to attach the id, both read by ``CallIdFilter``:
- ``CallLogger(logger, call_id)``: an adapter a call object keeps and logs through (works from any callback,
  which matters because protocol callbacks do not run inside the call's task context);
- ``call_context(call_id)`` / the ``current_call_id`` context variable: for code running inside a task or a
  ``with`` block that does not hold the call object.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, TextIO

# A context variable is per-task/per-context state, not shared module state.
current_call_id: ContextVar[str | None] = ContextVar("softswitch_call_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s call=%(call_id)s %(message)s"


@contextmanager
def call_context(call_id: str) -> Iterator[None]:
    """Tag every log line emitted inside the block (and tasks created in it) with ``call_id``."""
    token = current_call_id.set(call_id)
    try:
        yield
    finally:
        current_call_id.reset(token)


class CallLogger(logging.LoggerAdapter):
    """Logger adapter carrying a call id: ``CallLogger(log, call.id).info("answered")``."""

    def __init__(self, logger: logging.Logger, call_id: str) -> None:
        super().__init__(logger, {"call_id": call_id})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**self.extra, **(kwargs.get("extra") or {})}
        return msg, kwargs


class CallIdFilter(logging.Filter):
    """Ensure ``record.call_id`` exists: from the adapter, else the context variable, else ``-``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "call_id", None) is None:
            record.call_id = current_call_id.get() or "-"
        return True


def _utc(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return _utc(record)


def _call_or_none(record: logging.LogRecord) -> str | None:
    call_id = getattr(record, "call_id", None) or current_call_id.get()
    return None if call_id in (None, "-") else call_id


_STD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "call_id"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra=`` fields are included as they are."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _utc(record), "level": record.levelname, "logger": record.name,
                               "call": _call_or_none(record), "msg": record.getMessage()}
        out.update((k, v) for k, v in vars(record).items() if k not in _STD_ATTRS)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """Configure the root logger (replacing its handlers) and return the handler installed."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(CallIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
