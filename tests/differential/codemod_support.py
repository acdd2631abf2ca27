"""Running one codemod package over one project through both engines and taking the diff each
left: the Codemod CLI's `workflow run` (its steps' working directory is the project, as when a
user runs it there) and `ferry run --workdir` the same project, each on its own copy, each copy a
git repository whose first commit is the project as written. The diff is taken with every file
added (ignored ones too: a codemod may change a git-ignored file), so a change anywhere shows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = REPO / "tests" / "fixtures" / "codemods"
CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}

# A small project every package has something to change in (and things it must not touch).
PROJECT: dict[str, str] = {
    ".gitignore": "src/*.generated.ts\ndist/\nnode_modules/\n",
    "src/a/one.ts": "var a = 1;\nconsole.log(a);\n",
    "src/b/two.ts": "var b = 2;\nconsole.log(b);\nconsole.debug('x');\n",
    "src/b/three.tsx": "var c = 3;\nexport const C = () => <div>{c}</div>;\n",
    "src/.hidden.ts": "var h = 8;\n",
    "src/gen.generated.ts": "var g = 7;\n",
    "src/four.js": "var d = 4;\nconsole.log(d);\n",
    "src/a.mjs": "import data from './data.json' assert { type: 'json' };\n"
                 "const m = await import('./x.json', { assert: { type: 'json' } });\n",
    "src/page.tsx": "const { data } = useFetch('/api');\n"
                    "const r = useAsyncData('k', () => 1, { lazy: true });\n",
    "node_modules/x/index.ts": "var e = 5;\n",
    "dist/out.ts": "var f = 6;\n",
    "README.md": "# sample\n",
}


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` (no user config) and return its stdout."""
    env = {**CLEAN_ENV, "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout


def make_project(root: Path, files: dict[str, str]) -> Path:
    """Write `files` under `root` and commit them (the base every diff is taken against)."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A", "-f")
    git(root, "commit", "-q", "-m", "base")
    return root


def changes(root: Path) -> str:
    """Every change since the base commit, ignored files included, as one diff."""
    git(root, "add", "-A", "-f")
    return git(root, "diff", "--cached", "--binary", "HEAD")


@dataclass
class Ran:
    """One engine's run of a package."""

    exit: int
    diff: str
    output: str


def reference_run(binary: Path, workflow: Path, project: Path, home: Path,
                  params: dict[str, str] | None = None, dry_run: bool = False) -> Ran:
    """`codemod workflow run` in the project (its cwd and target)."""
    argv = [str(binary), "--disable-analytics", "workflow", "run", "-w", str(workflow),
            "-t", str(project), "--no-interactive", "--allow-dirty"]
    for key, value in (params or {}).items():
        argv += ["--param", f"{key}={value}"]
    if dry_run:
        argv.append("--dry-run")
    home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(argv, cwd=project, env={**CLEAN_ENV, "HOME": str(home)},
                          capture_output=True, text=True, timeout=180)
    return Ran(done.returncode, changes(project), done.stdout + done.stderr)


def ferry_run(binary: Path, workflow: Path, project: Path, home: Path,
              params: dict[str, str] | None = None, dry_run: bool = False,
              extra: list[str] | None = None) -> Ran:
    """`ferry run --workdir project` with the same engine for its codemod steps."""
    argv = [sys.executable, "-m", "runner", "run", "-w", str(workflow), "--workdir",
            str(project), *(extra or [])]
    for key, value in (params or {}).items():
        argv += ["--param", f"{key}={value}"]
    if dry_run:
        argv.append("--dry-run")
    env = {**CLEAN_ENV, "HOME": str(home), "FERRY_HOME": str(home / "ferry"),
           "FERRY_LIVE": "0", "FERRY_CODEMOD_BIN": str(binary)}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    return Ran(done.returncode, changes(project), done.stdout + done.stderr)


def both(binary: Path, package: Path, root: Path, files: dict[str, str] | None = None,
         workflow: str = "workflow.yaml", **kwargs: object) -> tuple[Ran, Ran]:
    """The package run by each engine on its own copy of the project."""
    files = files if files is not None else PROJECT
    results = []
    for engine, run in (("reference", reference_run), ("ferry", ferry_run)):
        project = make_project(root / engine / "project", files)
        results.append(run(binary, package / workflow, project, root / engine / "home",
                           **kwargs))  # type: ignore[operator]
    return results[0], results[1]


def reference_state(home: Path) -> dict[str, object]:
    """The workflow state of the reference engine's only run under `home`."""
    states = sorted((home / ".local" / "share" / "butterflow" / "state").glob("*.json"))
    assert len(states) == 1, states
    value: dict[str, object] = json.loads(states[0].read_text())
    return value


def copy_package(source: Path, dest: Path) -> Path:
    """A package copied to a scratch directory (to add a workflow next to its files)."""
    shutil.copytree(source, dest)
    return dest
