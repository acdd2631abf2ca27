"""The size rules' helpers: what a batch touched, and sizes measured no further than needed."""

from __future__ import annotations

from typing import Any

import pytest

from runner.limits import json_size
from server_stub.bounds import bounded_size, touched_values


@pytest.mark.parametrize(("path", "want"), [
    ("/state/k", {("state", "k")}), ("/state/k/deep/0", {("state", "k")}), ("/state", {("state",)}),
    ("/state/a~1b", {("state", "a/b")}), ("/tasks", {("tasks",)}), ("/tasks/t", {("task", "t")}),
    ("/tasks/t/outputs", {("outputs", "t")}), ("/tasks/t/outputs/o/x", {("outputs", "t", "o")}),
    ("/tasks/t/status", set()), ("/status", set()), ("/x", set()),
])
def test_touched_values(path: str, want: set[tuple[str, ...]]) -> None:
    assert touched_values([{"op": "add", "path": path, "value": 1}]) == want


@pytest.mark.parametrize("value", [
    None, True, 1, 1.5, "é\n\"", [], {}, [1, [2, {"a": "b"}]], {"k": {"x": [None, "y"]}, "z": 0},
])
def test_bounded_size_is_exact_under_the_cap(value: Any) -> None:
    assert bounded_size(value, 10**9) == json_size(value)


def test_bounded_size_stops_early_on_a_huge_list() -> None:
    huge = ["A" * 1500] * 1_000_000  # 1.5 GB as JSON; walking it all would take seconds
    assert bounded_size(huge, 1024 * 1024) > 1024 * 1024
