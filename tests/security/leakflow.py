"""The leak suite's attacker: a workflow whose steps try every way out for a secret or a token,
and the checks of where those bytes must never be."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.secrets.masker import Masker

IMAGE = "ferry-test/busybox:1"


@dataclass
class Values:
    """What must not leak: the run's secrets (masked everywhere) and the tokens (never
    readable by a step at all)."""

    token: str = field(default_factory=lambda: "tok-" + secrets.token_hex(12))
    multi: str = field(default_factory=lambda: "-----BEGIN-----\nline-one-" + secrets.token_hex(6)
                       + "\nline-two-" + secrets.token_hex(6) + "\n-----END-----")
    param: str = field(default_factory=lambda: "AKIA" + secrets.token_hex(10))
    runner_token: str = field(default_factory=lambda: "ft_" + secrets.token_urlsafe(24))
    admin_token: str = field(default_factory=lambda: "fa_" + secrets.token_urlsafe(24))
    other_repo: str = field(default_factory=lambda: "other-" + secrets.token_hex(10))

    @property
    def run_secrets(self) -> list[str]:
        """The secrets of the attacking run itself."""
        return [self.token, self.multi, self.param]

    @property
    def tokens(self) -> list[str]:
        """What no step may ever read: tokens and another repository's secret."""
        return [self.runner_token, self.admin_token, self.other_repo]


def workflow(runtime: str, *, loot: str, runner_yaml: Path, data_dir: Path) -> str:
    """The attacking workflow: node `attack` on `runtime`, then (containers) `collect` on the
    host copies the container's loot to `loot`."""
    in_container = runtime != "direct"
    dest = "loot" if in_container else loot
    rt = f"    runtime: {{type: {runtime}, image: {IMAGE}}}\n" if in_container else ""
    doc = f"""\
version: "1"
params:
  schema:
    api_key: {{type: string, secret: true}}
nodes:
  - id: attack
{rt}    env:
      TOKEN: "${{{{ secrets.TOKEN }}}}"
      MULTI: "${{{{ secrets.MULTI }}}}"
      KEY: "${{{{ params.api_key }}}}"
    steps:
      - name: print
        run: |
          echo "P1:${{{{ secrets.TOKEN }}}}"
          echo "P2:$TOKEN"
          echo "P3:$KEY"
      - name: encodings
        run: |
          printf '%s' "$TOKEN" | base64
          printf 'a%s' "$TOKEN" | base64
          printf 'ab%s' "$TOKEN" | base64
          printf '%s' "$TOKEN" | od -An -tx1 | tr -d ' \\n'; echo
      - name: split across writes
        run: |
          printf 'SPLIT:%s' "$(printf '%s' "$TOKEN" | cut -c1-7)"; sleep 0.3
          printf '%s\\n' "$(printf '%s' "$TOKEN" | cut -c8-)"
      - name: multi-line
        run: echo "$MULTI"
      - name: outputs
        run: |
          echo "stolen=$TOKEN" >> "$STATE_OUTPUTS"
          echo "out=$KEY" >> "$TASK_OUTPUTS"
      - name: loot
        run: |
          mkdir -p {dest}
          cat {runner_yaml} > {dest}/runner-yaml 2>&1 || true
          cat /proc/$PPID/environ > {dest}/ppid-environ 2>&1 || true
          cat {data_dir}/journal/* > {dest}/journal 2>&1 || true
          cat {data_dir}/ferry.db > {dest}/db 2>&1 || true
          cat {data_dir}/logs/*/* > {dest}/logs 2>&1 || true
          env > {dest}/env
      - name: hold
        run: |
          touch holding
          i=0; while [ ! -e go ] && [ $i -lt 900 ]; do sleep 0.1; i=$((i+1)); done
"""
    if in_container:
        doc += f"""\
  - id: collect
    depends_on: [attack]
    steps:
      - run: cp -r loot/. {loot}/
"""
    return doc


def found(values: list[str], data: bytes) -> bool:
    """Whether any value, a line of it, or its base64/hex/URL/JSON form is in `data`."""
    return Masker(values).found_in(data)


def files_under(*roots: Path, skip: tuple[Path, ...] = ()) -> dict[str, bytes]:
    """Every regular file below the roots, by path (a few MB at most in these tests), except
    the run's workspace: what a step writes there itself (its own env) is its own."""
    out: dict[str, bytes] = {}
    for root in roots:
        for path in root.rglob("*"):
            if "workspace" in path.relative_to(root).parts:
                continue
            if path.is_file() and not path.is_symlink() and not any(
                    path == s or s in path.parents for s in skip):
                out[str(path)] = path.read_bytes()
    return out


def leaks_in(places: dict[str, bytes], values: list[str]) -> list[str]:
    """The places holding a value."""
    return sorted(name for name, data in places.items() if found(values, data))


def inspect_env(client: Any, run_id: str) -> list[bytes]:
    """The create config (env, cmd, labels) of every container of the run, as JSON bytes."""
    out = []
    for item in client.containers(all=True, filters={"label": f"ferry.run={run_id}"}):
        config = client.inspect_container(item["Id"])["Config"]
        out.append(json.dumps(config).encode())
    return out
