"""Fuzz the stub with schemathesis against server_stub/openapi.json, every check.

Starts the stub (short leases, small body limit, claims held at most 0.5 s) with a repository
and a queued run, then runs `schemathesis run --checks all` (no 5xx, status codes, content types,
headers and bodies as documented, bad data refused, good data accepted, Allow on 405, auth
required) once per token: admin, runner and registration, bounded by --max-examples per
operation. Afterwards the stub's log must hold no "internal error". Writes
bench/results/server_fuzz.md.
    pip install -e '.[bench]' && python bench/server_fuzz.py [--max-examples 50]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server_stub.testing import StubProcess  # noqa: E402
from tests.helpers.gitrepo import make_repo  # noqa: E402
from tests.protocol.api import WORKFLOW_OK, Server  # noqa: E402


def fuzz(stub: StubProcess, token: str, max_examples: int) -> tuple[int, str]:
    """One schemathesis run; (exit code, last lines of its output)."""
    cmd = [_schemathesis() or "schemathesis", "run",
           str(ROOT / "server_stub" / "openapi.json"), "--url", stub.url,
           "-H", f"Authorization: Bearer {token}", "--checks", "all",
           "--max-examples", str(max_examples), "--seed", "1", "--request-timeout", "45"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, check=False)
    text = (proc.stdout + proc.stderr).replace(token, "<token>")
    return proc.returncode, text


def _schemathesis() -> str | None:
    """The schemathesis beside this Python (a venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "schemathesis"
    return str(here) if here.exists() else shutil.which("schemathesis")


def _version() -> str:
    from importlib.metadata import version

    return version("schemathesis")


def summary(text: str) -> str:
    """The schemathesis summary line (e.g. '19 passed in 42s')."""
    found = re.findall(r"=+ (.*(?:passed|failed|errors?|warnings?).*?) =+", text)
    return found[-1] if found else text.strip().splitlines()[-1]


def main() -> int:
    """Fuzz as the admin and as a runner; exit 1 if any 5xx was found."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-examples", type=int, default=50)
    args = parser.parse_args()
    if _schemathesis() is None:
        print("schemathesis is not installed: pip install schemathesis", file=sys.stderr)
        return 2
    rows, failed = [], False
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        make_repo(base / "repos", "demo", {"ok.yaml": WORKFLOW_OK})
        with StubProcess.start(base / "data", base / "repos", "--lease-ttl", "1",
                               "--offline-grace", "1", "--max-claim-wait", "0.5") as stub:
            server = Server(stub.url, stub.admin_token, stub.registration_token, stub.repos_dir)
            server.admin.ok("POST", "/runs", 201, json={"repo": "demo", "ref": "main",
                                                        "workflow_path": "ok.yaml"})
            runner = server.register()
            for who, token in (("admin", stub.admin_token), ("runner", runner.api.token or ""),
                               ("registration", stub.registration_token)):
                t0 = time.monotonic()
                code, text = fuzz(stub, token, args.max_examples)
                failed |= code != 0
                rows.append((who, code, summary(text), time.monotonic() - t0))
                if code != 0:
                    (ROOT / "bench" / "results" / f"server_fuzz_{who}.log").write_text(text)
                    print(f"{who}: failures in bench/results/server_fuzz_{who}.log")
            log = stub.log_path.read_text(errors="replace")
            internal = log.count("internal error")
    failed |= internal > 0
    lines = ["# server_fuzz", "", f"schemathesis {_version()}, `--checks all`, "
             f"--max-examples {args.max_examples} per operation, seed 1.", "",
             "| token | exit | schemathesis summary | seconds |", "|---|---|---|---|"]
    lines += [f"| {w} | {c} | {s} | {t:.0f} |" for w, c, s, t in rows]
    lines += ["", f"'internal error' lines in the stub's log: {internal}", "",
              "Warnings are schemathesis noting that random ids answer 404 and that one token "
              "gets 403 on the other role's endpoints: the expected answers."]
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "bench" / "results" / "server_fuzz.md").write_text(text, encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
