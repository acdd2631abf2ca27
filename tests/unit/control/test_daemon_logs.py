"""Log lines: secrets redacted in text and JSON, one line per event."""

from __future__ import annotations

import io
import json
import logging

from runner.control.logs import RedactingFilter, fields, make_handler

TOKEN = "frt_s3cr3t-token-value-123456"


def _logger(fmt: str, stream: io.StringIO) -> logging.Logger:
    logger = logging.getLogger(f"ferry.test.{fmt}.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(make_handler(stream, fmt, RedactingFilter([TOKEN])))
    return logger


def test_text_redacts_message_args_fields_and_exceptions() -> None:
    out = io.StringIO()
    log = _logger("text", out)
    log.info("token is %s", TOKEN, extra=fields(header=f"Bearer {TOKEN}", run="r1"))
    try:
        raise RuntimeError(f"request failed with {TOKEN}")
    except RuntimeError:
        log.exception("boom")
    text = out.getvalue()
    assert TOKEN not in text
    assert text.count("***") >= 3
    lines = text.splitlines()
    assert len(lines) == 2, "one line per event, even with a traceback"
    assert "run=r1" in lines[0]


def test_json_is_one_object_per_line_without_secrets() -> None:
    out = io.StringIO()
    log = _logger("json", out)
    log.warning("claim failed: %s", f"401 for {TOKEN}", extra=fields(run="abc", attempt=2))
    log.info("second\nline")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["level"] == "warning" and first["run"] == "abc" and first["attempt"] == 2
    assert TOKEN not in lines[0] and "***" in first["msg"]
    assert json.loads(lines[1])["msg"] == "second\nline"


def test_secrets_added_later_are_redacted_and_short_values_ignored() -> None:
    redactor = RedactingFilter()
    redactor.add("abc", None, "another-secret-value")
    assert redactor.redact("abc another-secret-value") == "abc ***"


def test_a_token_is_redacted_in_its_encodings_too() -> None:
    import base64
    from urllib.parse import quote

    redactor = RedactingFilter([TOKEN])
    for shown in (base64.b64encode(TOKEN.encode()).decode(), quote(TOKEN, safe=""),
                  TOKEN.encode().hex()):
        out = redactor.redact(f"request failed: {shown}")
        # base64 keeps the 1-2 characters that also depend on what follows the token
        assert out.startswith("request failed: ***") and len(out) <= len("request failed: ***Y=")
