"""The process-level parts of step isolation: Ferry's processes are non-dumpable (a step of
the same uid cannot read their /proc environ or memory), and the tokens they know are masked."""

from __future__ import annotations

import subprocess
import sys

from runner.cli.isolation import known_tokens, step_env
from runner.config import FerryConfig, parse_config


def test_undumpable_marks_the_process_and_its_children_get_it_back_at_exec() -> None:
    code = ("import ctypes, subprocess, sys;"
            "from runner.cli.isolation import undumpable;"
            "assert undumpable();"
            "libc = ctypes.CDLL(None);"
            "print(libc.prctl(3, 0, 0, 0, 0));"  # PR_GET_DUMPABLE of this process
            "print(subprocess.run([sys.executable, '-c', 'import ctypes;"
            "print(ctypes.CDLL(None).prctl(3,0,0,0,0))'], capture_output=True,"
            " text=True).stdout.strip())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["0", "1"]


def test_tokens_of_the_config_and_the_environment_are_masked_and_hidden() -> None:
    config = parse_config({"runner": {"token": "ft_runner_0123456789"},
                           "stateManagement": {"backend": "api", "apiConfig": {
                               "endpoint": "http://x", "authToken": "fr_report_0123456789"}}},
                          "cfg", environ={})
    environ = {"FERRY_SERVER_ADMIN_TOKEN": "fa_admin_0123456789", "PATH": "/bin",
               "HOME": "fr_report_0123456789"}
    tokens = known_tokens(config, environ)
    assert set(tokens) == {"ft_runner_0123456789", "fr_report_0123456789",
                           "fa_admin_0123456789"}
    assert step_env(config, environ) == {"PATH": "/bin"}
    assert step_env(FerryConfig(), {"PATH": "/bin"}) == {"PATH": "/bin"}
