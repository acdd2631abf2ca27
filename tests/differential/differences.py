"""Ferry's deliberate differences from the reference engine, each as a function that turns the
reference outcome into Ferry's. A case lists the differences it shows; the test applies them
to the reference outcome and then demands equality, and demands that each one changed something
(a difference that no longer shows is a stale pin). README's "Where Ferry differs" table names
every key here with its reason (a test checks it).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.differential.harness import HANG, Outcome


@dataclass(frozen=True)
class Difference:
    """One deliberate difference: its README key and how it changes the reference outcome."""

    key: str
    fix: Callable[[Outcome], Outcome]


def _copy(out: Outcome) -> Outcome:
    return copy.deepcopy(out)


def exit_as(code: int) -> Callable[[Outcome], Outcome]:
    """The reference never exits here; Ferry exits `code`."""
    def fix(out: Outcome) -> Outcome:
        new = _copy(out)
        new.exit = tuple(code if status == HANG else status for status in new.exit)
        return new
    return fix


def paused(out: Outcome) -> Outcome:
    """A run that waits for a manual trigger: the reference exits 0 when the waiting tasks have
    no dependents and never exits when they have; Ferry exits 3 (AwaitingTrigger) either way."""
    new = _copy(out)
    new.exit = (3, *new.exit[1:])
    return new


def exit_code(code: int) -> Callable[[Outcome], Outcome]:
    """Ferry's exit status (of the last command)."""
    def fix(out: Outcome) -> Outcome:
        new = _copy(out)
        new.exit = (*new.exit[:-1], code)
        return new
    return fix


def statuses(mapping: dict[tuple[str, str], str]) -> Callable[[Outcome], Outcome]:
    """Ferry ends these tasks ((node, item key or '' or 'master') -> status) differently."""
    def fix(out: Outcome) -> Outcome:
        new = _copy(out)
        new.tasks = sorted((n, k, mapping.get((n, k), s)) for n, k, s in new.tasks)
        return new
    return fix


def blocked_not_pending(out: Outcome) -> Outcome:
    """The reference leaves the dependents of a failed task Pending and never exits; Ferry
    marks them Blocked and exits 1."""
    new = _copy(out)
    new.tasks = sorted((n, k, "Blocked" if s == "Pending" else s) for n, k, s in new.tasks)
    new.exit = tuple(1 if status == HANG else status for status in new.exit)
    return new


def output(task: str, lines: list[str] | None) -> Callable[[Outcome], Outcome]:
    """Ferry's step output of one task (None: it prints nothing)."""
    def fix(out: Outcome) -> Outcome:
        new = _copy(out)
        if lines is None:
            new.output.pop(task, None)
        else:
            new.output[task] = list(lines)
        return new
    return fix


def state(value: dict[str, Any]) -> Callable[[Outcome], Outcome]:
    """Ferry's final state."""
    def fix(out: Outcome) -> Outcome:
        new = _copy(out)
        new.state = copy.deepcopy(value)
        return new
    return fix


def unquote_matrix_env(out: Outcome) -> Outcome:
    """The reference JSON-quotes a string matrix value in the environment (`region="us"`);
    Ferry gives the string itself."""
    new = _copy(out)
    new.output = {task: [re.sub(r'"([^"]*)"', r"\1", line) for line in lines]
                  for task, lines in new.output.items()}
    return new


def refused(code: int, message: str) -> Callable[[Outcome], Outcome]:
    """Ferry refuses the run before anything starts: no tasks, no state, one line."""
    def fix(out: Outcome) -> Outcome:
        return Outcome((code,), output={"(cli)": [message]})
    return fix


def runs(fix_tasks: list[tuple[str, str, str]], outputs: dict[str, list[str]],
         state_value: dict[str, Any] | None = None, code: int | None = None
         ) -> Callable[[Outcome], Outcome]:
    """Ferry runs what the reference refused or ran differently: its tasks, output and state."""
    def fix(out: Outcome) -> Outcome:
        new = _copy(out)
        new.tasks = sorted(fix_tasks)
        new.output = copy.deepcopy(outputs)
        if state_value is not None:
            new.state = copy.deepcopy(state_value)
        if code is not None:
            new.exit = (code,)
        return new
    return fix


def chain(*fixes: Callable[[Outcome], Outcome]) -> Callable[[Outcome], Outcome]:
    """Several changes of one difference, in order."""
    def fix(out: Outcome) -> Outcome:
        for one in fixes:
            out = one(out)
        return out
    return fix


def as_json(value: Any) -> str:
    """Compact JSON as steps print it."""
    return json.dumps(value, separators=(",", ":"))
