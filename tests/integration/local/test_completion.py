"""`ferry completion bash|zsh`: the generated script completes in a real bash (subcommands,
options, workflow files), and zsh loads it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import IN_CI

REPO = Path(__file__).resolve().parents[3]


def _script(shell: str, tmp_path: Path) -> Path:
    proc = subprocess.run([sys.executable, "-m", "runner", "completion", shell],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / f"ferry.{shell}"
    path.write_text(proc.stdout)
    return path


def _complete_bash(script: Path, words: list[str]) -> list[str]:
    """COMPREPLY for the command line `words` (the last word is being completed)."""
    quoted = " ".join(f"'{w}'" for w in words)
    program = (f"source {script}\nCOMP_WORDS=({quoted})\nCOMP_CWORD={len(words) - 1}\n"
               f"COMP_LINE=\"{' '.join(words)}\"\nCOMP_POINT=${{#COMP_LINE}}\n"
               "fn=$(complete -p ferry | sed -E 's/.* -F ([^ ]+) .*/\\1/')\n"
               "\"$fn\" ferry \"${COMP_WORDS[COMP_CWORD]}\" \"${COMP_WORDS[COMP_CWORD-1]}\"\n"
               "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    proc = subprocess.run(["bash", "-c", program], capture_output=True, text=True, cwd=REPO,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return sorted(filter(None, proc.stdout.splitlines()))


@pytest.mark.parametrize("words, expected", [
    (["ferry", "pr"], ["prune"]),
    (["ferry", "do"], ["doctor"]),
    (["ferry", "completion", ""], ["bash", "zsh"]),
    (["ferry", "run", "--max-p"], ["--max-parallel"]),
    (["ferry", "prune", "--dr"], ["--dry-run"]),
    (["ferry", "run", "-w", "examples/matrix-"], ["examples/matrix-from-state.yaml",
                                                  "examples/matrix-values.yaml"]),
])
def test_bash_completes_commands_options_and_files(tmp_path: Path, words: list[str],
                                                   expected: list[str]) -> None:
    assert _complete_bash(_script("bash", tmp_path), words) == expected


def test_zsh_loads_the_script(tmp_path: Path) -> None:
    if shutil.which("zsh") is None:
        if IN_CI:
            pytest.fail("zsh is missing; scripts/setup installs it")
        pytest.skip("zsh is not installed")
    script = _script("zsh", tmp_path)
    assert script.read_text().startswith("#compdef ferry")
    check = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    fpath = tmp_path / "fpath"
    fpath.mkdir()
    script.rename(fpath / "_ferry")
    loaded = subprocess.run(
        ["zsh", "-f", "-c", f"fpath=({fpath} $fpath); autoload -Uz compinit; "
         f"compinit -u -d {tmp_path}/zcompdump; echo ${{_comps[ferry]}}"],
        capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "_ferry"


def test_unknown_shell_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "runner", "completion", "fish"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2 and "invalid choice: 'fish'" in proc.stderr
