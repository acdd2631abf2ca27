"""Jinja2 templates (autoescaped) and the filters the pages share: times, durations, short ids,
status classes; every dashboard answer carries the same security headers."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from runner import __version__

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

HEADERS = {
    # scripts and styles only from the server's own files; no frames, no forms to elsewhere
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors "
                               "'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def parse_time(ts: str | None) -> datetime | None:
    """A stored ISO time, or None."""
    if not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


def shown_time(ts: str | None) -> str:
    """`2026-11-30 05:21:04` (UTC), '-' without a time."""
    when = parse_time(ts)
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else "-"


def seconds_between(start: str | None, end: str | None, now: datetime | None = None
                    ) -> float | None:
    """Seconds from `start` to `end` (or now); None without a start."""
    begin = parse_time(start)
    if begin is None:
        return None
    finish = parse_time(end) if end else (now or datetime.now(UTC))
    return None if finish is None else max(0.0, (finish - begin).total_seconds())


def duration(seconds: float | None) -> str:
    """`4.2s`, `3m 05s`, `2h 04m`; '-' for None."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def ago(ts: float | None, now: float | None = None) -> str:
    """`12s ago` for a Unix time; 'never' for None."""
    if ts is None:
        return "never"
    return duration(max(0.0, (now or time.time()) - ts)) + " ago"


def shown_value(value: Any) -> str:
    """A param value as text."""
    import json

    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def json_list(text: str | None) -> list[str]:
    """A JSON array column (a run's labels) as a list."""
    import json

    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(
        ["html"], default_for_string=True, default=True), undefined=StrictUndefined,
        trim_blocks=True, lstrip_blocks=True)
    env.filters.update(time=shown_time, duration=duration, short=lambda s: str(s or "")[:8],
                       value=shown_value, ago=ago, json_list=json_list)
    env.globals.update(version=__version__, seconds_between=seconds_between)
    return env


ENV = _environment()


def fragment(name: str, **context: Any) -> str:
    """A template rendered to text (a page or a live fragment)."""
    return ENV.get_template(name).render(**context)


def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A whole page with the dashboard's headers."""
    return HTMLResponse(fragment(name, **context), status_code=status, headers=HEADERS)
