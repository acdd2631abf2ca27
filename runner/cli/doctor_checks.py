"""The checks of `ferry doctor`, each a function returning `Check`s: what was found and, when
something is wrong, what to do about it. Pure of printing (`runner.cli.doctor` prints)."""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from runner.config import FerryConfig, load_config
from runner.errors import ConfigError, RuntimeUnavailable
from runner.paths import Paths

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
SKEW_WARN = 5.0
"""Seconds of clock difference with the server worth a warning (Date has 1 s resolution)."""
SKEW_FAIL = 300.0
"""Seconds past which run times and retention ages are plainly wrong."""
DISK_FAIL = 100 * 1024 * 1024
DISK_WARN = 1024 * 1024 * 1024
PROBE_REPO = "ferry-doctor-probe"
"""A repository name no server holds: reading it proves the token without changing anything."""
ENV_CODEMOD = "FERRY_CODEMOD_BIN"


@dataclass(frozen=True)
class Check:
    """One finding: which check, its outcome, what was seen, and the fix when it is not ok."""

    name: str
    status: str
    detail: str
    fix: str = ""


def check_config(path: Path, environ: Mapping[str, str]) -> tuple[list[Check], FerryConfig | None]:
    """The runner config exists, is private (0600) and parses."""
    if not path.exists():
        return [Check("config", SKIP, f"no runner config at {path}",
                      "only `ferry daemon` needs one: ferry register --server URL --token "
                      "REGISTRATION_TOKEN (or pass -c CONFIG)")], None
    checks: list[Check] = []
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        checks.append(Check("config", FAIL, f"{path} is mode {mode:04o}: other users can read "
                            "the runner token", f"chmod 600 {path}"))
    try:
        config = load_config(path, environ=environ)
    except ConfigError as exc:
        return [*checks, Check("config", FAIL, str(exc), f"fix the file, or register again: "
                               f"ferry register --server URL --token REG -c {path}")], None
    if not checks:
        checks.append(Check("config", OK, f"{path}: readable, mode 0600"))
    return checks, config


def server_of(config: FerryConfig | None) -> tuple[str, str] | None:
    """(url, token) the runner talks to: the runner section, else the api backend."""
    if config is None:
        return None
    if config.runner.server and config.runner.token:
        return config.runner.server.rstrip("/"), config.runner.token
    api = config.state_management.api_config
    if api is not None:
        return api.endpoint.rstrip("/"), api.auth_token
    return None


def check_server(url: str, token: str, *, timeout: float = 10.0) -> list[Check]:
    """The control plane answers, accepts the token, and agrees with our clock."""
    import requests

    probe = f"{url}/api/v1/repos/{PROBE_REPO}/blob/HEAD/probe"
    sent = time.time()
    try:
        resp = requests.get(probe, headers={"Authorization": f"Bearer {token}"},
                            timeout=timeout)
    except requests.RequestException as exc:
        reason = str(exc).split(": ")[-1][:200] or type(exc).__name__
        return [Check("server", FAIL, f"cannot connect to the control plane at {url}: {reason}",
                      "check runner.server in the config, that ferry-server runs there, and "
                      "the network or proxy between them")]
    received = time.time()
    checks = [_token_check(url, resp)]
    skew = _skew(resp.headers.get("Date"), (sent + received) / 2)
    if skew is not None:
        checks.append(_skew_check(url, skew, received - sent))
    return checks


def _token_check(url: str, resp: Any) -> Check:
    code = resp.status_code
    try:
        body = resp.json()
    except ValueError:
        body = None
    ferry_like = isinstance(body, dict) and isinstance(body.get("error"), str)
    if code == 401:
        return Check("server", FAIL, f"{url} refused the runner token (HTTP 401)",
                     "register this machine again: ferry register --server URL --token "
                     "REGISTRATION_TOKEN")
    if code == 403:
        return Check("server", FAIL, f"{url} accepted the token but not as a runner's "
                     "(HTTP 403)", "runner.token must be the token `ferry register` wrote")
    if code >= 500 or not ferry_like:
        return Check("server", FAIL, f"{url} answered HTTP {code}, not as a Ferry control "
                     "plane does", "check runner.server: the URL of ferry-server (behind its "
                     "proxy, without /api/v1)")
    return Check("server", OK, f"{url} answers and accepts the runner token")


def _skew(date_header: str | None, local: float) -> float | None:
    if not date_header:
        return None
    try:
        return parsedate_to_datetime(date_header).timestamp() - local
    except (TypeError, ValueError):
        return None


def _skew_check(url: str, skew: float, rtt: float) -> Check:
    # the Date header is whole seconds: a difference under a second (plus the round trip) is
    # not a measurement
    slack = 1.0 + rtt
    size = abs(skew)
    side = "ahead of" if skew > 0 else "behind"
    text = f"the server's clock is {size:.0f} s {side} this machine's"
    fix = "synchronise the clocks (systemd-timesyncd or chrony on both machines)"
    if size > SKEW_FAIL + slack:
        return Check("clock", FAIL, f"{text}: run times and retention ages will be wrong", fix)
    if size > SKEW_WARN + slack:
        return Check("clock", WARN, text, fix)
    return Check("clock", OK, f"within {SKEW_WARN:g} s of the server's clock")


def check_engines(config: FerryConfig | None, environ: Mapping[str, str],
                  images: list[str]) -> list[Check]:
    """Docker and Podman answer; each `--image` is present or pullable on one that does."""
    from runner.runtimes.factory import RuntimeSettings, container_runtime

    podman_socket = config.runner.containers.podman_socket if config else None
    settings = RuntimeSettings(podman_socket=podman_socket,
                               xdg_runtime_dir=environ.get("XDG_RUNTIME_DIR"))
    checks: list[Check] = []
    clients: dict[str, Any] = {}
    for kind in ("docker", "podman"):
        runtime = container_runtime(kind, settings)
        assert runtime is not None
        try:
            clients[kind] = client = runtime.client()
            version = client.version().get("Version", "?")
        except RuntimeUnavailable as exc:
            checks.append(Check(kind, WARN, f"{exc} (only workflows with runtime {kind} need "
                                "it)", _engine_fix(kind)))
            continue
        except Exception as exc:  # the engine answered the ping but not the version
            checks.append(Check(kind, WARN, f"{kind} engine answers oddly: {exc}",
                                _engine_fix(kind)))
            continue
        checks.append(Check(kind, OK, f"{kind} {version} answers"))
    for image in images:
        checks.append(_image_check(image, clients))
    return checks


def _engine_fix(kind: str) -> str:
    if kind == "docker":
        return ("start it (systemctl start docker) and let this user use it (usermod -aG "
                "docker USER), or set DOCKER_HOST")
    return ("start its API socket (podman system service --time=0, or systemctl --user "
            "start podman.socket), or set runner.containers.podman_socket")


def _image_check(image: str, clients: Mapping[str, Any]) -> Check:
    if not clients:
        return Check(f"image {image}", FAIL, "no container engine answers",
                     "start Docker or Podman first")
    reasons = []
    for kind, client in clients.items():
        try:
            client.images.get(image)
            return Check(f"image {image}", OK, f"present on {kind}")
        except Exception:  # not present: is it pullable?
            pass
        try:
            client.api.inspect_distribution(image)
            return Check(f"image {image}", OK, f"not present on {kind}, but its registry "
                         "offers it (pulled on first use)")
        except Exception as exc:
            reasons.append(f"{kind}: {str(exc).splitlines()[0][:200]}")
    return Check(f"image {image}", FAIL, "not present and cannot be pulled (" +
                 "; ".join(reasons) + ")", "build or load it (docker load / podman load), or "
                 "make its registry reachable and logged in (docker login)")


def check_codemod(environ: Mapping[str, str], configured: str | None = None) -> list[Check]:
    """The Codemod CLI (for workflows with codemod / ast-grep steps), found as Ferry finds it
    (`runner.codemod_cli`: `FERRY_CODEMOD_BIN`, `runner.tools.codemod`, `codemod` on PATH)."""
    from runner.codemod_cli import NPM_PACKAGE, PINNED_VERSION, cli_version, find_codemod

    try:
        cli = find_codemod(environ, configured)
    except ConfigError as exc:
        return [Check("codemod", FAIL, str(exc), f"point {ENV_CODEMOD} (or runner.tools.codemod)"
                      " at the codemod binary, or unset it")]
    if cli is None:
        return [Check("codemod", WARN, "the Codemod CLI is not found (codemod on PATH, "
                      f"runner.tools.codemod or {ENV_CODEMOD})", "only workflows with codemod or "
                      f"ast-grep steps need it: npm install {NPM_PACKAGE}@{PINNED_VERSION}")]
    try:
        version = cli_version(cli)
    except ConfigError as exc:
        return [Check("codemod", FAIL, str(exc),
                      f"reinstall it, or point {ENV_CODEMOD} at a working binary")]
    return [Check("codemod", OK, f"{cli.path} (codemod {version}, from {cli.source})")]


def check_disk(paths: Paths) -> list[Check]:
    """Room for the state database, journals and logs under the data dir, and that it is
    writable."""
    where = paths.data_dir
    probe = where
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    free = usage.free
    text = f"{_gib(free)} free of {_gib(usage.total)} under {where}"
    fix = ("free space on that filesystem: `ferry prune` removes finished runs' files, or move "
           "FERRY_HOME")
    checks = []
    if free < DISK_FAIL:
        checks.append(Check("disk", FAIL, f"{text}: runs will fail to record their state", fix))
    elif free < DISK_WARN or free < usage.total * 0.05:
        checks.append(Check("disk", WARN, f"{text}: running low", fix))
    else:
        checks.append(Check("disk", OK, text))
    if where.exists() and not os.access(where, os.W_OK):
        checks.append(Check("disk", FAIL, f"{where} is not writable by this user",
                            "chown it to the user running Ferry, or set FERRY_HOME"))
    return checks


def check_processes(config: FerryConfig | None, environ: Mapping[str, str]) -> list[Check]:
    """How host steps' processes would be tracked here: a cgroup per task, or the session
    fallback, which a daemonizing step can escape (README "Reliability")."""
    from runner.cli.leftovers import tracking_from
    from runner.runtimes.tracking import CgroupHome, Tracking

    try:
        mode = tracking_from(environ, config.runner.process_tracking if config else "auto")
    except ConfigError as exc:
        return [Check("processes", FAIL, str(exc), "set it to auto, cgroup or session")]
    home = CgroupHome(mode)
    fix = ("run as root, or under systemd with Delegate=yes (systemd/ferry-runner.service), or "
           "give this user a writable cgroup v2")
    try:
        parent = home.parent()
    except RuntimeUnavailable as exc:
        return [Check("processes", FAIL, f"{exc}: host tasks would fail", fix)]
    if parent is not None:
        return [Check("processes", OK, home.describe())]
    if mode == Tracking.SESSION:
        return [Check("processes", OK, "steps tracked by session and marker (set to 'session')")]
    return [Check("processes", WARN, f"{home.describe()}: a step that daemonizes with setsid "
                                     "and env -i can outlive its task", fix)]


def _gib(size: float) -> str:
    return f"{size / 1024**3:.1f} GiB" if size >= 1024**3 else f"{size / 1024**2:.0f} MiB"


def check_journals(paths: Paths) -> list[Check]:
    """Journals still holding records for the control plane (offline runs not delivered),
    damaged ones, and those set aside as never deliverable."""
    from runner.errors import StateError
    from runner.state.journal import Journal, journal_paths, set_aside_paths

    waiting, broken = 0, []
    for path in journal_paths(paths.journal_dir):
        try:
            journal = Journal(path, readonly=True)  # a look only: a daemon may be writing it
        except StateError as exc:
            broken.append(str(exc))
            continue
        if journal.gap is not None:
            broken.append(f"{path}: damaged ({'; '.join(journal.damage)}): record "
                          f"{journal.gap} and the ones after it cannot be delivered")
        waiting += bool(journal.backlog() or journal.lost)
    checks = [Check("journals", FAIL, reason, "look at the file; `ferry sync` reports it too "
                    "(it ends the run Failed on the server and moves the file aside)")
              for reason in broken]
    if waiting:
        checks.append(Check("journals", WARN, f"{waiting} journal(s) hold records the control "
                            "plane has not acknowledged", "ferry sync (the daemon also "
                            "delivers them when it starts)"))
    aside = set_aside_paths(paths.journal_dir)
    if aside:
        checks.append(Check("journals", WARN, f"{len(aside)} journal(s) were set aside as never "
                            f"deliverable, under {paths.journal_dir}/<superseded|damaged|"
                            "refused>/", "read them if you need what they hold, then delete "
                            "them"))
    if not checks:
        checks.append(Check("journals", OK, "nothing waits for delivery"))
    return checks
