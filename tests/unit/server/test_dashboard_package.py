"""Every template and static file of the dashboard is declared package data (an installed
ferry-server without them would answer 500 on every page)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_templates_and_static_files_are_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["server_stub"]
    web = ROOT / "server_stub" / "web"
    files = [p.relative_to(ROOT / "server_stub").as_posix()
             for p in sorted((web / "templates").iterdir()) + sorted((web / "static").iterdir())]
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert files and missing == []
