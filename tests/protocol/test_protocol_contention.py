"""Contention: 20 claimers with their own connections, 500 runs: each claimed exactly once."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from tests.protocol.api import Server, label

RUNS = 500
CLAIMERS = 20


def test_every_run_is_claimed_exactly_once(server: Server, repo: dict[str, str]) -> None:
    lab = label()
    claimers = [server.register([lab], name=f"c{i}") for i in range(CLAIMERS)]
    claimed: list[str] = []
    lock = threading.Lock()
    created = threading.Event()

    def claim_loop(i: int) -> None:
        runner = claimers[i]
        while True:
            got = runner.claim(wait=0.5)
            if got is None:
                if created.is_set():
                    return
                continue
            with lock:
                claimed.append(got["run"]["id"])

    def create(_: int) -> str:
        return str(server.admin.ok("POST", "/runs", 201, json={
            "repo": repo["name"], "ref": repo["sha"], "workflow_path": "ok.yaml",
            "labels": [lab]})["id"])

    threads = [threading.Thread(target=claim_loop, args=(i,)) for i in range(CLAIMERS)]
    for t in threads:
        t.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(create, range(RUNS)))
    finally:
        created.set()
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
    counts = Counter(claimed)
    assert len(ids) == RUNS
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1, [r for r, n in counts.items() if n > 1][:5]
