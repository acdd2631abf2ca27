"""Reading the Codemod CLI's JSON Lines: the task's log lines, the changed files and the run's
end, from lines the CLI 1.18.3 printed (`--format jsonl`)."""

from __future__ import annotations

import json

from runner.engine.codemod.output import CodemodOutput

W = "/work/proj"


def _log(msg: str, level: str = "info") -> str:
    return json.dumps({"seq": 1, "level": level, "event": "log", "msg": msg})


def _feed(lines: list[str], chunk: int = 7) -> tuple[CodemodOutput, list[str], list[int]]:
    out: list[bytes] = []
    ended: list[int] = []
    parser = CodemodOutput(out.append, W, on_done=lambda: ended.append(1))
    data = "\n".join(lines).encode() + b"\n"
    for i in range(0, len(data), chunk):  # arbitrary chunking: lines cut anywhere
        parser(data[i:i + chunk])
    parser.flush()
    return parser, b"".join(out).decode().splitlines(), ended


def test_a_completed_run_lists_changed_files_relative_and_ends() -> None:
    parser, text, ended = _feed([
        "Workflow started 885a207e-c531-48f2-a7a6-99683bdbc23b",
        _log("Starting workflow run 885a207e-c531-48f2-a7a6-99683bdbc23b"),
        _log("Executing task fcc6ba0a (ferry-step)"),
        json.dumps({"event": "step_start", "step_name": "transform"}),
        _log(f"Modified file: {W}/./src/components/C1.tsx", "debug"),
        _log(f"Modified file: {W}/src/b.ts", "debug"),
        _log("src/index.ts\nPARAMS {}"),
        _log("Failed to execute codemod on src/x.ts: boom", "error"),
        json.dumps({"event": "step_end", "step_name": "transform", "outcome": "success"}),
        _log("Step 'transform' finished successfully for task fcc6ba0a"),
        _log("Task fcc6ba0a (ferry-step) completed"),
        _log("Workflow run 885a207e-c531-48f2-a7a6-99683bdbc23b completed"),
        "Workflow completed in 1.0s",
    ])
    assert parser.changed == ["src/components/C1.tsx", "src/b.ts"]
    assert parser.completed is True and parser.done.is_set() and ended == [1]
    assert text == ["Modified file: src/components/C1.tsx", "Modified file: src/b.ts",
                    "src/index.ts", "PARAMS {}",
                    "error: Failed to execute codemod on src/x.ts: boom"]


def test_a_failed_run_gives_its_reason() -> None:
    parser, text, _ = _feed([
        json.dumps({"event": "step_end", "step_name": "nested", "outcome": "failure"}),
        _log("Task 1c7e (ferry-step) step nested failed: Other error: Failed to resolve "
             "package: HTTP request failed", "error"),
        _log("Workflow run d2b5 failed"),
        "\x1b[31mcodemod::cli::error\x1b[0m",
    ])
    assert parser.completed is False
    assert parser.error == "Other error: Failed to resolve package: HTTP request failed"
    assert "codemod::cli::error" in text  # plain lines pass, colours removed


def test_dry_run_and_ast_grep_lines() -> None:
    parser, text, _ = _feed([
        _log(f"Would modify file (dry run): {W}/./src/a.ts", "debug"),
        _log(f"Found 2 matches in {W}/src/b.ts", "debug"),
        _log("Evaluated 13 files into 6 shards"),
        _log("something the CLI logs at debug level", "debug"),
    ])
    assert parser.changed == ["src/a.ts"] and parser.completed is None
    assert text == ["Would modify file (dry run): src/a.ts", "Found 2 matches in src/b.ts",
                    "Evaluated 13 files into 6 shards"]


def test_one_chunk_of_the_cli_is_one_chunk_of_the_log() -> None:
    """On a control plane's runner every chunk passed on is a journal record written with
    fsync: a shard's 100 changed files in one read of the CLI's output are one record."""
    out: list[bytes] = []
    ended: list[int] = []
    parser = CodemodOutput(out.append, W, on_done=lambda: ended.append(1))
    lines = [_log(f"Modified file: {W}/src/f{i}.ts", "debug") for i in range(100)]
    lines.append(_log("Workflow run 885a207e completed"))
    parser(("\n".join(lines) + "\n").encode())
    parser.flush()
    assert len(out) == 1  # all of it, passed on before the CLI was told to stop
    assert out[0].decode().splitlines() == [f"Modified file: src/f{i}.ts" for i in range(100)]
    assert ended == [1] and len(parser.changed) == 100
