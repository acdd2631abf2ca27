"""/healthz, /readyz and /metrics over real HTTP on an ephemeral port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from runner.control.health import HealthServer, parse_addr
from runner.control.metrics import DaemonMetrics
from runner.errors import ConfigError


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def served() -> Iterator[tuple[str, DaemonMetrics, FakeClock]]:
    clock = FakeClock()
    metrics = DaemonMetrics(unreachable_after=30, loop_max_age=60, clock=clock)
    server = HealthServer("127.0.0.1", 0, metrics)
    port = server.start()
    assert port > 0
    yield f"http://127.0.0.1:{port}", metrics, clock
    server.stop()


def test_healthz_follows_the_loop(served: tuple[str, DaemonMetrics, FakeClock]) -> None:
    base, metrics, clock = served
    assert requests.get(base + "/healthz", timeout=5).status_code == 200
    clock.now += 61
    answer = requests.get(base + "/healthz", timeout=5)
    assert answer.status_code == 503 and "stalled" in answer.text
    metrics.beat()
    assert requests.get(base + "/healthz", timeout=5).status_code == 200


def test_readyz_false_while_draining_or_server_unreachable(
        served: tuple[str, DaemonMetrics, FakeClock]) -> None:
    base, metrics, clock = served
    assert requests.get(base + "/readyz", timeout=5).status_code == 200
    metrics.contact_failed()
    clock.now += 10
    metrics.beat()
    assert requests.get(base + "/readyz", timeout=5).status_code == 200  # under the threshold
    clock.now += 25
    metrics.beat()
    answer = requests.get(base + "/readyz", timeout=5)
    assert answer.status_code == 503 and "unreachable" in answer.text
    metrics.contact_ok()
    assert requests.get(base + "/readyz", timeout=5).status_code == 200
    metrics.set_draining()
    answer = requests.get(base + "/readyz", timeout=5)
    assert answer.status_code == 503 and "draining" in answer.text


def _samples(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_in_prometheus_text_format(served: tuple[str, DaemonMetrics, FakeClock]) -> None:
    base, metrics, clock = served
    metrics.backlog = lambda: 7
    metrics.inc("runs_claimed", 3)
    metrics.inc("runs_completed", 2)
    metrics.inc("runs_failed")
    metrics.set_running(1, 4)
    answer = requests.get(base + "/metrics", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = _samples(answer.text)
    assert samples["ferry_runs_claimed_total"] == 3
    assert samples["ferry_runs_completed_total"] == 2
    assert samples["ferry_runs_failed_total"] == 1
    assert samples["ferry_runs_running"] == 1
    assert samples["ferry_concurrency"] == 4
    assert samples["ferry_journal_backlog"] == 7
    assert samples["ferry_seconds_since_last_contact"] == -1
    metrics.contact_ok()
    clock.now += 12.5
    samples = _samples(requests.get(base + "/metrics", timeout=5).text)
    assert samples["ferry_seconds_since_last_contact"] == 12.5
    assert "# TYPE ferry_runs_claimed_total counter" in answer.text
    assert "# TYPE ferry_journal_backlog gauge" in answer.text


def test_unknown_path_is_404(served: tuple[str, DaemonMetrics, FakeClock]) -> None:
    base, _, _ = served
    assert requests.get(base + "/nope", timeout=5).status_code == 404


def test_parse_addr() -> None:
    assert parse_addr("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_addr("[::1]:9750") == ("::1", 9750)
    for bad in ("localhost", ":80", "h:x", "h:70000"):
        with pytest.raises(ConfigError):
            parse_addr(bad)


def test_port_in_use_is_a_config_error(served: tuple[str, DaemonMetrics, FakeClock]) -> None:
    base, metrics, _ = served
    port = int(base.rsplit(":", 1)[1])
    with pytest.raises(ConfigError, match="cannot listen"):
        HealthServer("127.0.0.1", port, metrics).start()
