"""`ferry run`/`resume` with secrets, as a user runs them: --secret, --secrets-file, params
declared secret (given again on resume), bad input, and the step environment."""

from __future__ import annotations

import os
import stat

from tests.integration.local.conftest import Ferry

KEY = "AKIA-resume-key-314159"
TOKEN = "tok-cli-2718281828"

PAUSING = """\
version: "1"
params:
  schema:
    api_key: {type: string, secret: true}
nodes:
  - id: first
    steps:
      - run: echo "first ${{ params.api_key }} ${{ secrets.TOKEN }}"
  - id: gate
    type: manual
    depends_on: [first]
    steps:
      - run: test "${{ params.api_key }}" = "$EXPECT" && echo "after ${{ params.api_key }}"
        env: {EXPECT: "${{ secrets.EXPECT }}"}
"""


def test_secret_params_are_never_stored_and_are_given_again_on_resume(ferry: Ferry) -> None:
    (ferry.workdir / "wf.yaml").write_text(PAUSING)
    (ferry.workdir / "s.env").write_text(f"export TOKEN='{TOKEN}'\nEXPECT={KEY}\n")
    first = ferry("run", "-w", "wf.yaml", "--param", f"api_key={KEY}", "--secrets-file", "s.env")
    assert first.returncode == 3, first.stderr
    run_id = ferry.run_id(first.stdout)
    assert "first *** ***" in first.stdout
    assert ferry.doc(run_id)["params"] == {"api_key": "***"}
    # without the value the secret param is unset: the task fails naming it
    missing = ferry("resume", "-i", run_id, "--trigger-all", "--secrets-file", "s.env")
    assert missing.returncode == 1
    gate = ferry.by_node(ferry.doc(run_id))["gate"][0]
    assert "params.api_key" in gate["error"]
    stored = b"".join(p.read_bytes() for p in ferry.home.rglob("*") if p.is_file())
    assert KEY.encode() not in stored and TOKEN.encode() not in stored
    assert KEY not in first.stdout + first.stderr + missing.stdout + missing.stderr


def test_resume_gives_a_secret_param_again(ferry: Ferry) -> None:
    (ferry.workdir / "wf.yaml").write_text(PAUSING)
    first = ferry("run", "-w", "wf.yaml", "--param", f"api_key={KEY}", "--secret",
                  f"TOKEN={TOKEN}")
    run_id = ferry.run_id(first.stdout)
    refused = ferry("resume", "-i", run_id, "--param", "other=x")
    assert refused.returncode == 2 and "only params declared secret" in refused.stderr
    again = ferry("resume", "-i", run_id, "--trigger-all", "--param", f"api_key={KEY}",
                  "--secret", f"EXPECT={KEY}", "--secret", f"TOKEN={TOKEN}")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "after ***" in again.stdout


def test_bad_secrets_are_one_line_exit_2_never_showing_the_value(ferry: Ferry) -> None:
    (ferry.workdir / "wf.yaml").write_text(PAUSING)
    rows = []
    for args in (["--secret", "TOKEN=abc"], ["--secret", "9BAD=abcdefgh"],
                 ["--secret", "no-equals-hunter22"], ["--secrets-file", "missing.env"],
                 ["--param", "api_key=abc"]):
        proc = ferry("run", "-w", "wf.yaml", *args)
        rows.append((args, proc.returncode, proc.stderr.strip()))
    print("\n".join(f"{a} -> {c}: {e}" for a, c, e in rows))
    for _, code, err in rows:
        assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
        assert "hunter22" not in err and "=abc" not in err
    assert not (ferry.home / "data" / "ferry.db").exists() or ferry.db_dump()[0] == []


def test_steps_see_the_allowed_environment_only_and_ferry_files_stay_private(
        ferry: Ferry) -> None:
    (ferry.workdir / "wf.yaml").write_text("""\
version: "1"
nodes:
  - id: env
    steps:
      - run: |
          env | sort > seen.env
          echo "a line for the log"
          echo "via expression: ${{ env.FERRY_TOKEN || 'unset' }} ${{ env.LANG || 'nolang' }}"
""")
    env = {**ferry.env, "FERRY_TOKEN": "ft_should_not_pass_123", "LANG": "C.UTF-8",
           "MY_BUILD_FLAG": "on", "FERRY_LIVE": "0"}
    import subprocess

    proc = subprocess.run(ferry.argv("run", "-w", "wf.yaml"), env=env, cwd=ferry.workdir,
                          text=True, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    seen = (ferry.workdir / "seen.env").read_text()
    assert "LANG=C.UTF-8" in seen and "PATH=" in seen
    for hidden in ("FERRY_TOKEN", "FERRY_HOME", "MY_BUILD_FLAG", "PYTHONPATH"):
        assert f"{hidden}=" not in seen, hidden
    assert "via expression: unset C.UTF-8" in proc.stdout
    for path in (ferry.home / "data", *(ferry.home / "data").rglob("*")):
        want = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(os.stat(path).st_mode) == want, path
