"""Ages of things to keep or remove (`30d`, `12h`, `2w`): retention settings of the runner and of
the control plane. A leaf module: the server and the config file parse the same way."""

from __future__ import annotations

import re

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0, None: 86400.0}


def parse_age(value: str | int | float) -> float:
    """Seconds in `30d`, `12h`, `90m`, `2w`, `45s`, or a bare number of days; `0` means 'any age'.
    ValueError naming the text otherwise."""
    if isinstance(value, bool):
        raise ValueError("an age must be a number of days or a string such as '30d' or '12h'")
    if isinstance(value, int | float):
        seconds = float(value) * 86400.0
    else:
        match = _AGE.match(value)
        if not match:
            raise ValueError(f"'{value}' is not an age (use e.g. '30d', '12h', '2w', '90m')")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 0:
        raise ValueError("an age cannot be negative")
    return seconds


def describe_age(seconds: float) -> str:
    """`30d`, `12h`, `90m` or `45s`: the shortest exact form of an age."""
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
