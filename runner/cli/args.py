"""Argument types and parsers shared by the subcommands (usage errors exit 2)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_params(items: list[str]) -> dict[str, str]:
    """`key=value` pairs split at the first `=`; a malformed one is a `UsageError`."""
    from runner.errors import UsageError

    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"Invalid parameter format: {item}. Expected format: key=value")
        params[key.strip()] = value
    return params


def non_negative_int(text: str) -> int:
    """A whole number of at least 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def age(text: str) -> float:
    """An age such as `30d`, `12h`, `2w` (`runner.ages`), in seconds."""
    from runner.ages import parse_age

    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
