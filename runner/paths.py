"""Where Ferry keeps its files: the state database, logs, journals, work dirs, config and cache.

`Paths` is built once by the CLI (`Paths.from_env(os.environ)`) and passed down; nothing below
the CLI looks at the environment. Directories are created on demand with mode 0700 because they
hold run state, logs and (under the config dir) the runner token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.errors import UnsafeId

APP_NAME = "ferry"


def ensure_dir(path: Path) -> Path:
    """Create `path` and its missing parents, each with mode 0700 (`mkdir(parents=True)` gives
    the parents the umask's default, 0755); return it."""
    if not path.is_dir():
        missing = []
        parent = path
        while not parent.exists() and parent != parent.parent:
            missing.append(parent)
            parent = parent.parent
        for directory in reversed(missing):
            directory.mkdir(mode=0o700, exist_ok=True)
    return path


def safe_segment(value: str, what: str) -> str:
    """A single path segment: ids come from the database or the wire, never trust a slash."""
    if not value or value in {".", ".."} or "/" in value or "\\" in value or "\0" in value:
        raise UnsafeId(f"invalid {what} for a path: {value!r}")
    return value


def log_file_under(logs_dir: Path, run_id: str, task_id: str) -> Path:
    """`<logs_dir>/<run_id>/<task_id>.log`, both ids checked to be single path segments."""
    return logs_dir / safe_segment(run_id, "run id") / f"{safe_segment(task_id, 'task id')}.log"


def control_dir_under(work_dir: Path, run_id: str, task_id: str) -> Path:
    """`<work_dir>/<run_id>/tasks/<task_id>`: a task's control dir, ids checked as above."""
    return work_dir / safe_segment(run_id, "run id") / "tasks" / safe_segment(task_id, "task id")


def ledger_file_under(work_dir: Path, run_id: str, task_id: str) -> Path:
    """`<work_dir>/<run_id>/tasks/<task_id>.procs`: what a task started on this host (next to
    its control dir, which each attempt empties)."""
    return control_dir_under(work_dir, run_id, task_id).with_name(f"{task_id}.procs")


def ledger_files(work_dir: Path, run_id: str | None = None) -> list[Path]:
    """Every task ledger under `work_dir` (of one run when `run_id` is given)."""
    runs = "*" if run_id is None else safe_segment(run_id, "run id")
    return sorted(work_dir.glob(f"{runs}/tasks/*.procs"))


@dataclass(frozen=True)
class Paths:
    """The three roots (data, config, cache) and the files under them."""

    data_dir: Path
    config_dir: Path
    cache_dir: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Paths:
        """`FERRY_HOME` (data/, config/, cache/ under it) if set, else platformdirs' user dirs."""
        home = environ.get("FERRY_HOME", "").strip()
        if home:
            return cls.under(Path(home).expanduser())
        import platformdirs

        return cls(
            data_dir=Path(platformdirs.user_data_dir(APP_NAME)),
            config_dir=Path(platformdirs.user_config_dir(APP_NAME)),
            cache_dir=Path(platformdirs.user_cache_dir(APP_NAME)),
        )

    @classmethod
    def under(cls, root: Path) -> Paths:
        """Everything below one directory (`root/data`, `root/config`, `root/cache`)."""
        root = root.absolute()
        return cls(data_dir=root / "data", config_dir=root / "config", cache_dir=root / "cache")

    @property
    def db_path(self) -> Path:
        """The SQLite state database (WAL mode)."""
        return self.data_dir / "ferry.db"

    @property
    def logs_dir(self) -> Path:
        """Root of the task logs: `logs/<run_id>/<task_id>.log`."""
        return self.data_dir / "logs"

    @property
    def journal_dir(self) -> Path:
        """Root of the per-run journals: `journal/<run_id>.jsonl`."""
        return self.data_dir / "journal"

    @property
    def work_dir(self) -> Path:
        """Root of the per-run working directories."""
        return self.data_dir / "work"

    @property
    def runner_config(self) -> Path:
        """The runner's config file (holds the runner token: mode 0600)."""
        return self.config_dir / "runner.yaml"

    @property
    def workflows_cache(self) -> Path:
        """Downloaded workflow files: `workflows/<repo>/<commit>/...`."""
        return self.cache_dir / "workflows"

    def log_file(self, run_id: str, task_id: str) -> Path:
        """The log file of one task."""
        return log_file_under(self.logs_dir, run_id, task_id)

    def run_work_dir(self, run_id: str) -> Path:
        """The working directory root of one run."""
        return self.work_dir / safe_segment(run_id, "run id")

    def ensure(self) -> Paths:
        """Create the data, config and cache roots (mode 0700); return self."""
        for path in (self.data_dir, self.config_dir, self.cache_dir):
            ensure_dir(path)
        return self

