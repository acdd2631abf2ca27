"""Secret names and values as Ferry accepts them, and the dotenv file of `--secrets-file`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from runner.errors import SecretInvalid

MIN_SECRET_LENGTH = 4
"""Shorter values are refused: masking them would shred ordinary words (GitHub's rule too)."""
MAX_SECRET_BYTES = 64 * 1024
"""A value larger than this is refused: it would not fit in an environment variable anyway."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def check_name(name: str, where: str = "secret") -> str:
    """A secret name is an identifier (letters, digits, '_', not starting with a digit)."""
    if not _NAME.match(name):
        raise SecretInvalid(f"{where}: '{name[:60]}' is not a valid secret name (letters, "
                            "digits and '_', not starting with a digit, at most 128)")
    return name


def check_value(name: str, value: str, where: str = "secret") -> str:
    """Refuse a value that is too short to mask, too long, or holds a NUL byte (never shown)."""
    if len(value.strip()) < MIN_SECRET_LENGTH:
        raise SecretInvalid(f"{where} {name}: a value shorter than {MIN_SECRET_LENGTH} "
                            "characters is refused (masking it would hide ordinary text)")
    if "\0" in value:
        raise SecretInvalid(f"{where} {name}: the value holds a NUL byte")
    if len(value.encode("utf-8", "surrogateescape")) > MAX_SECRET_BYTES:
        raise SecretInvalid(f"{where} {name}: the value is larger than {MAX_SECRET_BYTES} bytes")
    return value


def checked(values: Mapping[str, str], where: str = "secret") -> dict[str, str]:
    """Every name and value checked; a copy."""
    return {check_name(k, where): check_value(k, v, where) for k, v in values.items()}


def parse_assignments(items: Iterable[str], where: str = "--secret") -> dict[str, str]:
    """`NAME=VALUE` items (split at the first '='), checked. The message never shows a value."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SecretInvalid(f"{where}: expected NAME=VALUE, got a value without '=' "
                                "(not shown)")
        out[check_name(name.strip(), where)] = check_value(name.strip(), value, where)
    return out


def read_dotenv(path: Path) -> dict[str, str]:
    """`NAME=VALUE` lines of a dotenv file (quotes, `export`, comments, multi-line quoted values
    as python-dotenv reads them), checked; `SecretInvalid` names the file, never a value."""
    from dotenv import dotenv_values

    where = f"--secrets-file {path}"
    if not path.is_file():
        raise SecretInvalid(f"{where}: not a readable file")
    try:
        raw = dotenv_values(path, interpolate=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretInvalid(f"{where}: cannot read it: {type(exc).__name__}") from None
    out: dict[str, str] = {}
    for name, value in raw.items():
        if value is None:
            raise SecretInvalid(f"{where}: '{name}' has no '=' and no value")
        out[check_name(name, where)] = check_value(name, value, where)
    return out
