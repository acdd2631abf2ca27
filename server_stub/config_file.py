"""`ferry-server --config FILE`: the serve options in a YAML file (keys are the long option names,
`data_dir` or `data-dir`); flags given on the command line win over the file.

Every option of `ferry-server serve` may appear, so an option added to the command line is a
config key at once. Unknown keys, values of the wrong type and values outside an option's
choices are one error naming the file, the key and its line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

NOT_IN_FILE = {"help", "config", "version"}


class ConfigFileError(ValueError):
    """The config file cannot be used; the message names the file, key and line."""


def _lines(text: str) -> dict[str, int]:
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): k.start_mark.line + 1 for k, _ in node.value}


def read_config_file(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The file's settings as argparse defaults of `parser` (dest -> converted value)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read the config file: "
                              f"{exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigFileError(f"{path}{at}: not valid YAML: "
                              f"{getattr(exc, 'problem', None) or exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: the config file must be a mapping of option: value")
    actions = {a.dest: a for a in parser._actions
               if a.option_strings and a.dest not in NOT_IN_FILE}
    lines = _lines(text)
    out: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{path}:{lines[str(key)]}" if str(key) in lines else str(path)
        dest = str(key).replace("-", "_")
        action = actions.get(dest)
        if action is None:
            known = ", ".join(sorted(actions))
            raise ConfigFileError(f"{where}: unknown key '{key}' (known: {known})")
        out[dest] = _convert(action, value, f"{where}: {key}")
    return out


def _convert(action: argparse.Action, value: Any, where: str) -> Any:
    if action.nargs == 0:  # a switch such as --no-access-log
        if not isinstance(value, bool):
            raise ConfigFileError(f"{where}: must be true or false")
        return value
    if value is None or isinstance(value, dict | list):
        raise ConfigFileError(f"{where}: must be a single value")
    text = str(value).lower() if isinstance(value, bool) else str(value)
    converted: Any = text
    if callable(action.type):
        try:
            converted = action.type(text)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise ConfigFileError(f"{where}: {exc}") from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigFileError(f"{where}: '{value}' is not one of "
                              f"{', '.join(map(str, action.choices))}")
    return converted
