"""Daemon log lines: one line per event, text or JSON, with known secrets redacted.

The CLI attaches a stream handler to stderr with these formatter/filter classes; the daemon
only calls `logging`. Every record passes `RedactingFilter`, so a token that slips into a message,
an argument or an exception text is replaced by `***` before anything is written.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO

from runner.secrets.masker import Masker
from runner.secrets.values import MIN_SECRET_LENGTH

REDACTED = "***"


class RedactingFilter(logging.Filter):
    """Replaces every known secret value (tokens, the secrets of claimed runs) and its common
    encodings in a record's final message by `***` (the masking of step output)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._masker = Masker()
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        """Register more secret values (a new runner token after a reload, a run's secrets)."""
        fresh = {s for s in secrets if s and len(s.strip()) >= MIN_SECRET_LENGTH}
        with self._lock:
            if not fresh <= self._masker.values:
                self._masker = self._masker.with_values(fresh)

    def redact(self, text: str) -> str:
        """`text` with every known secret replaced."""
        return self._masker.text(text)

    def filter(self, record: logging.LogRecord) -> bool:
        """Freeze the record's message with secrets removed (args are merged in first)."""
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        extra = getattr(record, "ferry_fields", None)
        if isinstance(extra, dict):
            for key, value in extra.items():
                if isinstance(value, str):
                    extra[key] = self.redact(value)
        return True


def _ts(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """`2024-05-01T10:00:00.000+00:00 INFO run claimed run=... attempt=1`."""

    def format(self, record: logging.LogRecord) -> str:
        """One line; structured fields appended as key=value."""
        fields = getattr(record, "ferry_fields", None) or {}
        extra = "".join(f" {k}={v}" for k, v in fields.items() if v is not None)
        line = f"{_ts(record)} {record.levelname} {record.getMessage()}{extra}"
        if record.exc_text:
            line += " | " + " ".join(record.exc_text.split())
        return line.replace("\n", " ")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and the record's structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Compact JSON."""
        out: dict[str, object] = {"ts": _ts(record), "level": record.levelname.lower(),
                                  "logger": record.name, "msg": record.getMessage()}
        out.update(getattr(record, "ferry_fields", None) or {})
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


def make_handler(stream: IO[str], fmt: str, redactor: RedactingFilter) -> logging.Handler:
    """A stream handler with the chosen format ("text" or "json") and the redacting filter."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(redactor)
    return handler


def fields(**values: object) -> dict[str, object]:
    """`log.info("...", extra=fields(run=id))`: structured fields for both formats."""
    return {"ferry_fields": dict(values)}
