"""Bytes a runner sends per run: diffs against sending the full run document after each change.

    python bench/daemon_bytes.py [--tasks 1000]

A real stub server (subprocess) and a real `ferry daemon --once` (subprocess) talk through a
counting TCP proxy on 127.0.0.1 that parses the daemon's requests (method, path, headers,
Content-Length body) and tallies what the daemon sends per endpoint; answers are piped through
unparsed and counted in total. The workflow is a 1,000-task matrix whose steps each print a line.

The alternative design (send the whole run document after every change) is computed from the
same run: the document at creation (GET /runs/{id} before the daemon claims it) folded with
every diff the daemon sent, in order (deduplicated by writer+seq), measuring the compact JSON
document after each diff. The fold must equal the server's final document, which proves the
capture is complete. Prints a table and writes bench/results/daemon_bytes.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import add_quiet_options, load_note, wait_for_quiet  # noqa: E402

from runner.diff import apply_ops  # noqa: E402
from tests.integration.daemon.conftest import DaemonProc, Server  # noqa: E402

WORKFLOW_HEAD = """\
version: "1"
nodes:
  - id: fan
    strategy:
      type: matrix
      values:
"""
WORKFLOW_TAIL = """\
    steps:
      - name: work
        run: echo "processing item $item"
"""

_ENDPOINT = [
    (re.compile(r"^/api/v1/runs/[^/]+/diffs$"), "diffs"),
    (re.compile(r"^/api/v1/runs/[^/]+/logs$"), "logs"),
    (re.compile(r"^/api/v1/runs/[^/]+/heartbeat$"), "heartbeat"),
    (re.compile(r"^/api/v1/runs/[^/]+/start$"), "start (confirm)"),
    (re.compile(r"^/api/v1/runs/[^/]+/finish$"), "finish"),
    (re.compile(r"^/api/v1/runs/claim$"), "claim"),
    (re.compile(r"^/api/v1/runners/register$"), "register (once per runner)"),
    (re.compile(r"^/api/v1/repos/"), "workflow file + archive"),
    (re.compile(r"^/api/v1/runs/[^/]+(/logs/.*)?$"), "GET document / logs"),
]






def workflow(tasks: int) -> str:
    """A matrix node with `tasks` items, one echo step each."""
    items = "".join(f"        - item: i{n:04d}\n" for n in range(tasks))
    return WORKFLOW_HEAD + items + WORKFLOW_TAIL


def endpoint(method: str, path: str) -> str:
    """The tally bucket of a request."""
    path = path.split("?", 1)[0]
    for pattern, name in _ENDPOINT:
        if pattern.match(path):
            return name
    return f"{method} other"


class CountingProxy:
    """127.0.0.1:<port> -> upstream; parses requests (Content-Length bodies), pipes answers."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.body_bytes: Counter[str] = Counter()
        self.wire_bytes: Counter[str] = Counter()
        self.answer_bytes = 0
        self.diff_bodies: list[bytes] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        """Stop accepting."""
        self._closed.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            server = socket.create_connection(self.upstream)
            server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._upstream, args=(client, server), daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client), daemon=True).start()

    def _downstream(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(65536):
                with self._lock:
                    self.answer_bytes += len(data)
                client.sendall(data)
        except OSError:
            pass
        finally:
            _shut(client)

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = client.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                    elif name.strip().lower() == "transfer-encoding":
                        raise RuntimeError("chunked request bodies are not counted")
                while len(rest) < length:
                    data = client.recv(65536)
                    if not data:
                        return
                    rest += data
                body, buf = rest[:length], rest[length:]
                name = endpoint(method, path)
                with self._lock:
                    self.requests[name] += 1
                    self.body_bytes[name] += len(body)
                    self.wire_bytes[name] += len(head) + 4 + len(body)
                    if name == "diffs":
                        self.diff_bodies.append(body)
                server.sendall(head + b"\r\n\r\n" + body)
        except OSError:
            pass
        finally:
            _shut(server)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def compact(doc: Any) -> int:
    """Size of a document as a compact JSON body (what the client would send)."""
    return len(json.dumps(doc, separators=(",", ":")).encode())


def full_document_bytes(initial: dict[str, Any],
                        bodies: list[bytes]) -> tuple[int, int, int, dict[str, Any]]:
    """(diffs applied, bytes of the document after each diff summed, bytes of the document
    after each batch that changed it summed, final document)."""
    doc = json.loads(json.dumps(initial))
    seen: set[tuple[str, int]] = set()
    count = per_diff = per_batch = 0
    for body in bodies:
        changed = False
        for diff in json.loads(body)["diffs"]:
            key = (diff["writer"], int(diff["seq"]))
            if key in seen:
                continue
            seen.add(key)
            apply_ops(doc, diff["ops"])
            changed = True
            count += 1
            per_diff += compact(doc)
        if changed:
            per_batch += compact(doc)
    return count, per_diff, per_batch, doc


def strip_volatile(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without fields only the server sets (its bookkeeping, not the diffs')."""
    return {k: v for k, v in doc.items() if k not in {"queue", "attempt", "runner", "lease"}}


def mb(n: float) -> str:
    """Bytes as a readable size."""
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def main() -> int:
    """Run one matrix run through the counting proxy, print and write the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000)
    add_quiet_options(parser)
    args = parser.parse_args()
    load, waited = wait_for_quiet(args.max_load, args.quiet_wait)
    tmp = Path(tempfile.mkdtemp(prefix="ferry-bytes-"))
    server = Server(tmp / "server")
    server.start()
    proxy = CountingProxy(("127.0.0.1", int(server.url.rsplit(":", 1)[1].strip("/"))))
    daemon: DaemonProc | None = None
    try:
        server.repo("bench", {"wf.yaml": workflow(args.tasks)})
        run_id = server.submit("bench", "wf.yaml")
        initial = server.run(run_id)
        home = tmp / "home"
        home.mkdir()
        daemon = DaemonProc(home, server, "bytes")
        daemon.register(url=f"http://127.0.0.1:{proxy.port}")
        t0 = time.monotonic()
        daemon.start("--once", "--log-level", "warning")
        code = daemon.wait(1800)
        elapsed = time.monotonic() - t0
        if code != 0:
            raise SystemExit(f"daemon exited {code}:\n{daemon.log()[-3000:]}")
        final = server.run(run_id)
    finally:
        if daemon is not None:
            daemon.kill()
        proxy.close()
        server.kill()
    if final["status"] != "Completed":
        raise SystemExit(f"run ended {final['status']}")
    with proxy._lock:
        bodies = list(proxy.diff_bodies)
        requests, body_bytes, wire_bytes = (Counter(proxy.requests), Counter(proxy.body_bytes),
                                            Counter(proxy.wire_bytes))
        answers = proxy.answer_bytes
    count, full_total, batch_total, folded = full_document_bytes(initial, bodies)
    if strip_volatile(folded) != strip_volatile(final):
        raise SystemExit("the fold of the captured diffs differs from the server's document")
    tasks = sum(1 for t in final["tasks"].values() if not t.get("master"))
    if tasks != args.tasks:
        raise SystemExit(f"expected {args.tasks} tasks, the run has {tasks}")

    diff_body = body_bytes["diffs"]
    log_body = body_bytes["logs"]
    sent_body = sum(body_bytes.values())
    sent_wire = sum(wire_bytes.values())
    per_endpoint = "".join(
        f"| {name} | {requests[name]} | {mb(body_bytes[name])} | {mb(wire_bytes[name])} |\n"
        for name in sorted(requests, key=lambda n: -wire_bytes[n]))
    alt_total = full_total + (sent_body - diff_body)
    table = (
        "| measure | ferry (diffs) | full document after each change | ratio |\n"
        "|---|---|---|---|\n"
        f"| state bodies ({count} diffs, {len(bodies)} POST /diffs) | {mb(diff_body)} | "
        f"{mb(full_total)} | {full_total / diff_body:.0f}x |\n"
        f"| state bodies, full document once per POST (batched as ferry batches) | "
        f"{mb(diff_body)} | {mb(batch_total)} | {batch_total / diff_body:.1f}x |\n"
        f"| all request bodies (state + logs {mb(log_body)} + control) | {mb(sent_body)} | "
        f"{mb(alt_total)} | {alt_total / sent_body:.0f}x |\n"
        f"| per task, state bodies | {diff_body / tasks:.0f} B | {full_total / tasks:,.0f} B | "
        f"- |\n"
        f"| final document (compact JSON) | {mb(compact(final))} | - | - |\n")
    detail = ("| endpoint | requests | body bytes | wire bytes (headers + body) |\n"
              "|---|---|---|---|\n" + per_endpoint +
              f"| **total sent** | {sum(requests.values())} | {mb(sent_body)} | "
              f"{mb(sent_wire)} |\n| answers received (raw) | | | {mb(answers)} |\n")
    text = (
        "# Daemon bytes per run\n\n"
        f"Machine: {os.cpu_count()} cores, Debian {Path('/etc/debian_version').read_text().strip()}"
        f", Python {sys.version.split()[0]}. {load_note(load, waited, args.max_load)}\n"
        f"Command: `python bench/daemon_bytes.py --tasks {args.tasks}` — one run of a "
        f"{args.tasks}-task matrix (one `echo` step per task) through `ferry daemon --once` "
        f"({elapsed:.1f} s), counted at a TCP proxy between the daemon and the stub.\n\n"
        "The alternative column is computed from the same run: the document at creation folded "
        "with every diff the daemon sent, in order, summing the compact JSON document after "
        "each diff (a design that sends the whole document per change). The fold equals the "
        "server's final document.\n\n"
        f"{table}\nWhat the daemon sent, by endpoint:\n\n{detail}")
    out = ROOT / "bench" / "results" / "daemon_bytes.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(table)
    print(detail)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
