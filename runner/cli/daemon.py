"""`ferry register` and `ferry daemon`: pair this machine with a control plane, then run its work.

Exit codes of `ferry daemon`:
    0    stopped normally: drained after SIGTERM, --idle-timeout reached, or --once finished a
         Completed run
    1    --once: the run Failed           3  --once: the run is AwaitingTrigger (released)
    4    --once: the run was Canceled      2  bad configuration or usage (no runner config...)
    6    the control plane refused the runner token (re-register)
    7    --once: the run ended but records of it wait in the journal (not delivered within the
         drain timeout); the next start or `ferry sync` delivers them
    130  stopped at once: SIGINT or a second SIGTERM terminated running tasks
`ferry register`: 0 registered, 2 bad usage, 6 the server refused the registration token or is
unreachable.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.cli.args import positive_int
from runner.errors import FerryError

if TYPE_CHECKING:
    from runner.api.client import ControlClient
    from runner.cli.runner_config import RunnerConfig
    from runner.control.contact import Contact
    from runner.control.daemon import DaemonSettings
    from runner.control.health import HealthServer
    from runner.control.job import RunJob
    from runner.control.logs import RedactingFilter
    from runner.control.metrics import DaemonMetrics
    from runner.control.retention import RetentionTicker
    from runner.paths import Paths
    from runner.runtimes.base import Runtime
    from runner.runtimes.stepenv import StepUser

LOG_LEVELS = ("debug", "info", "warning", "error")


def _duration(text: str) -> float:
    from runner.workflow.model import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _labels(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(sub: Any) -> None:
    """Add `register` and `daemon` to the `ferry` parser."""
    p = sub.add_parser("register", help="register this machine as a runner of a control plane",
                       description="Exchange a registration token for a runner id and token; "
                                   "writes the runner config (mode 0600).")
    p.add_argument("--server", required=True, metavar="URL", help="control plane base URL")
    p.add_argument("--token", required=True, metavar="REG",
                   help="registration token (or '-' to read it from stdin)")
    p.add_argument("--name", metavar="N", help="runner name (default: the host name)")
    p.add_argument("--labels", type=_labels, default=[], metavar="a,b",
                   help="labels this runner serves (a run runs here when its labels are a "
                        "subset of these)")
    p.add_argument("--step-user", metavar="USER",
                   help="when the daemon runs as root, run host steps as this unprivileged user")
    p.add_argument("-c", "--config", metavar="CONFIG",
                   help="where to write the runner config (default: <config dir>/runner.yaml)")
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("daemon", help="claim and run work from the control plane",
                       description="Long-poll the control plane for runs, execute them, stream "
                                   "state and logs back through the local journal. SIGTERM "
                                   "drains, SIGINT cancels, SIGHUP reloads the config.")
    p.add_argument("-c", "--config", metavar="CONFIG",
                   help="runner config (default: <config dir>/runner.yaml)")
    p.add_argument("--concurrency", type=positive_int, metavar="N",
                   help="runs executed at once (default: config, else 1)")
    p.add_argument("--labels", type=_labels, metavar="a,b", help="override the config's labels")
    p.add_argument("--once", action="store_true", help="run one claimed run, then exit")
    p.add_argument("--idle-timeout", type=_duration, metavar="D",
                   help="exit 0 after D (e.g. 30s, 5m) without work")
    p.add_argument("--drain-timeout", type=_duration, metavar="D",
                   help="once stopping (SIGTERM, --once), how long finished runs' records may "
                        "take to reach the server before they are left in the journal "
                        "(default: config, else 60s)")
    p.add_argument("--health-addr", metavar="HOST:PORT",
                   help="serve /healthz, /readyz, /metrics here (port 0: any free port)")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="one line per event on stderr: text, or one JSON object (default text)")
    p.add_argument("--log-level", choices=LOG_LEVELS, default=None,
                   help="default: config, else info")
    p.set_defaults(func=cmd_daemon)


# -- register -------------------------------------------------------------------------------


def cmd_register(args: argparse.Namespace) -> int:
    """Register with the control plane and write the runner config."""
    from runner.api.client import ControlClient
    from runner.cli.labels import CODEMOD_LABEL, registration_labels
    from runner.cli.runner_config import save_config
    from runner.codemod_cli import find_codemod
    from runner.errors import UsageError
    from runner.paths import Paths

    token = sys.stdin.readline().strip() if args.token == "-" else args.token
    if not token:
        raise UsageError("--token: the registration token is empty")
    paths = Paths.from_env(os.environ)
    target = Path(args.config) if args.config else paths.runner_config
    name = args.name or socket.gethostname()
    if args.step_user:
        from runner.runtimes.stepenv import StepUser

        StepUser.lookup(args.step_user)  # a typo must not surface at the daemon's start
    labels = registration_labels(args.labels, find_codemod(os.environ) is not None)
    client = ControlClient(args.server, token, timeout=30)
    try:
        answer = client.register(name, labels)
    finally:
        client.close()
    extra = {"step_user": args.step_user} if args.step_user else {}
    save_config(target, server=args.server, runner_id=answer.runner_id, token=answer.token,
                 name=name, labels=labels, **extra)
    print(f"registered runner '{name}' ({answer.runner_id}) with {args.server}"
          + (f", labels {','.join(labels)}" if labels else ""))
    if CODEMOD_LABEL in labels and CODEMOD_LABEL not in args.labels:
        print(f"the Codemod CLI is found: '{CODEMOD_LABEL}' is among the labels, so runs "
              "with codemod steps may come here")
    print(f"runner config written to {target} (mode 0600)")
    return 0


# -- daemon ---------------------------------------------------------------------------------


def cmd_daemon(args: argparse.Namespace) -> int:
    """Run the daemon until it is stopped; see the module docstring for exit codes."""
    from runner.cli.isolation import TOKEN_VARIABLES, open_for_step_user, undumpable
    from runner.cli.leftovers import daemon_start_sweep, reap_daemon_containers
    from runner.cli.reaper import ReaperSettings, start_reaper
    from runner.cli.runner_config import read_config
    from runner.control.contact import Contact
    from runner.control.daemon import Daemon
    from runner.control.logs import RedactingFilter, fields, make_handler
    from runner.control.metrics import DaemonMetrics
    from runner.control.notify import Notifier, WatchdogTicker, watchdog_interval
    from runner.control.replayer import Replayer
    from runner.paths import Paths
    from runner.runtimes.stepenv import StepUser
    from runner.state.replay import SyncReport

    undumpable()  # steps of our uid cannot read /proc/<daemon>/environ or its memory
    paths = Paths.from_env(os.environ).ensure()
    config_path = Path(args.config) if args.config else paths.runner_config
    cfg = read_config(config_path)
    reaper = start_reaper(ReaperSettings(paths.work_dir, cfg.grace_seconds,
                                         log_format=args.log_format,
                                         podman_socket=cfg.podman_socket,
                                         xdg_runtime_dir=os.environ.get("XDG_RUNTIME_DIR")))
    tokens = [t for t in [cfg.token, *(os.environ.get(v) for v in TOKEN_VARIABLES)] if t]
    redactor = RedactingFilter(tokens)
    root = logging.getLogger("ferry")
    root.handlers[:] = [make_handler(sys.stderr, args.log_format, redactor)]
    root.propagate = False
    root.setLevel((args.log_level or cfg.log_level).upper())
    log = logging.getLogger("ferry.daemon")

    user = StepUser.lookup(cfg.step_user) if cfg.step_user and os.geteuid() == 0 else None
    if user is not None:
        open_for_step_user(paths.data_dir, paths.work_dir)
    elif os.geteuid() == 0:
        log.warning("running as root without runner.step_user: host steps run as root and can "
                    "read the runner's config, token and journals")
    period = watchdog_interval(os.environ.get("WATCHDOG_USEC"))
    metrics = DaemonMetrics(loop_max_age=period / 2 if period else 60.0)
    notifier = Notifier(os.environ.get("NOTIFY_SOCKET"))
    health = _start_health(args.health_addr, metrics, log, fields)
    client = _client(cfg)
    contact = Contact(client.display_url, metrics)
    stop_delivery, bounded = threading.Event(), threading.Event()
    env = _step_env(cfg, tokens, user)
    runtimes = _runtimes(cfg, env, user)
    daemon_start_sweep(runtimes, paths, cfg.grace_seconds, log)
    reap_daemon_containers(runtimes, log)
    settings = _settings(cfg, args)
    job = _job(cfg, client, paths, metrics, runtimes, env, tokens, user, redactor,
               settings.drain_timeout, stop=stop_delivery, bounded=bounded, contact=contact,
               checkouts=settings.concurrency)

    def sync_pass(stop: threading.Event, budget: float | None) -> SyncReport:
        from runner.api.retry import RetryPolicy
        from runner.state.replay import sync_all

        policy = RetryPolicy(max_attempts=None if budget else 3, max_time=budget,
                             max_wait=min(10.0, budget or 10.0))
        return sync_all(paths.journal_dir, client, policy=policy, stop_event=stop,
                        on_retry=lambda exc, _: contact.failed(exc), on_ack=contact.delivered)

    metrics.backlog = lambda: _backlog(paths.journal_dir)[0]

    def reload(old: DaemonSettings) -> DaemonSettings:
        fresh = read_config(config_path)
        redactor.add(fresh.token)
        root.setLevel((args.log_level or fresh.log_level).upper())
        return _settings(fresh, args)

    daemon = Daemon(settings, client=client, job=job, metrics=metrics, notifier=notifier,
                    replayer=Replayer(sync_pass), contact=contact,
                    backlog=lambda: _backlog(paths.journal_dir),
                    journal_dir=str(paths.journal_dir), bounded=bounded,
                    stop_delivery=stop_delivery, reload_settings=reload)

    def on_term(signum: int, frame: Any) -> None:
        daemon.drain()

    def on_int(signum: int, frame: Any) -> None:
        daemon.cancel()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_int)
    signal.signal(signal.SIGHUP, lambda signum, frame: daemon.reload())
    ticker = WatchdogTicker(notifier, period, metrics.healthy) if period and notifier.enabled \
        else None
    if ticker is not None:
        ticker.start()
    retention = _retention(cfg, paths)
    if retention is not None:
        retention.start()
    log.info("daemon starting", extra=fields(runner=cfg.runner_id, server=client.display_url,
                                             pid=os.getpid()))
    reaper.wait_started()  # a SIGKILL from here on leaves no step running
    try:
        code = daemon.run()  # its last line says this very exit code
    finally:
        job.settle(timeout=30.0)  # checkouts still being reset: finished, not cut half-way
        if ticker is not None:
            ticker.stop()
        if retention is not None:
            retention.stop()
        if health is not None:
            health.stop()
        client.close()
        notifier.close()
    return code


def _retention(cfg: RunnerConfig, paths: Paths) -> RetentionTicker | None:
    """The daemon's own pruning pass, when the config has a `runner.retention` section."""
    if cfg.retention is None:
        return None
    from runner.control.retention import RetentionTicker
    from runner.state.retention import RetentionPolicy

    policy = RetentionPolicy(older_than=cfg.retention.older_than, keep=cfg.retention.keep)
    return RetentionTicker(paths, policy, cfg.retention.interval)


def _start_health(addr: str | None, metrics: DaemonMetrics, log: logging.Logger,
                  fields: Callable[..., dict[str, object]]) -> HealthServer | None:
    if not addr:
        return None
    from runner.control.health import HealthServer, parse_addr

    host, port = parse_addr(addr)
    server = HealthServer(host, port, metrics)
    bound = server.start()
    log.info("health endpoint listening", extra=fields(host=host, port=bound))
    return server


def _backlog(journal_dir: Path) -> tuple[int, int]:
    """Records waiting in journals and how many runs they belong to (read-only: a journal a
    run is writing is read as it is, never repaired)."""
    from runner.state.journal import Journal, journal_paths

    records = runs = 0
    for path in journal_paths(journal_dir):
        try:
            waiting = Journal(path, readonly=True).backlog()
        except FerryError:  # a status figure only: the replay reports a damaged journal loudly
            continue
        records += waiting
        runs += 1 if waiting else 0
    return records, runs


def _codemod(cfg: RunnerConfig) -> Path | None:
    """The Codemod CLI this daemon runs codemod steps with (None: not installed)."""
    from runner.codemod_cli import find_codemod

    found = find_codemod(os.environ, cfg.codemod)
    return found.path if found is not None else None


def _settings(cfg: RunnerConfig, args: argparse.Namespace) -> DaemonSettings:
    from runner.cli.labels import offered_labels
    from runner.control.daemon import DaemonSettings

    # the engine is a capability: only runners that have it claim runs with codemod steps
    labels, warnings = offered_labels(args.labels if args.labels is not None else cfg.labels,
                                      cfg.labels, _codemod(cfg) is not None)
    for warning in warnings:
        logging.getLogger("ferry.daemon").warning("%s", warning)
    return DaemonSettings(labels=labels,
                          concurrency=args.concurrency or cfg.concurrency or 1,
                          once=bool(args.once), idle_timeout=args.idle_timeout,
                          claim_wait=cfg.claim_wait,
                          drain_timeout=(args.drain_timeout if args.drain_timeout is not None
                                         else cfg.drain_timeout))


def _client(cfg: RunnerConfig) -> ControlClient:
    from runner.api.client import ControlClient

    return ControlClient(cfg.server, cfg.token, timeout=30)


def _step_env(cfg: RunnerConfig, tokens: list[str], user: StepUser | None) -> dict[str, str]:
    """What steps (and `${{ env.X }}`) see of the daemon's environment."""
    from runner.runtimes.stepenv import step_environment

    return step_environment(os.environ, cfg.step_env_allow, user=user, hidden_values=tokens)


def _job(cfg: RunnerConfig, client: ControlClient, paths: Paths, metrics: DaemonMetrics,
         runtimes: Mapping[str, Runtime], env: dict[str, str], tokens: list[str],
         user: StepUser | None, redactor: RedactingFilter, drain_timeout: float, *,
         stop: threading.Event, bounded: threading.Event, contact: Contact,
         checkouts: int) -> RunJob:
    from runner.control.job import JobSettings, RunJob

    settings = JobSettings(runner_id=cfg.runner_id, max_parallel=cfg.max_parallel,
                           env=env, heartbeat_interval=cfg.heartbeat_interval,
                           masked=tuple(tokens),
                           step_owner=(user.uid, user.gid) if user else None,
                           codemod_bin=_codemod(cfg), drain_timeout=drain_timeout,
                           idle_checkouts=checkouts)
    return RunJob(settings, client=client, paths=paths, runtimes=runtimes,
                  metrics=metrics, stop_delivery=stop, redactor=redactor, bounded=bounded,
                  contact=contact)


def _runtimes(cfg: RunnerConfig, env: dict[str, str],
              user: StepUser | None) -> dict[str, Runtime]:
    from runner.cli.leftovers import tracking_from
    from runner.runtimes.factory import RuntimeSettings, build_runtimes

    settings = RuntimeSettings(grace_seconds=cfg.grace_seconds, runner_id=cfg.runner_id,
                               policy=cfg.container_policy, podman_socket=cfg.podman_socket,
                               xdg_runtime_dir=os.environ.get("XDG_RUNTIME_DIR"),
                               step_user=user,
                               tracking=tracking_from(os.environ, cfg.process_tracking))
    return build_runtimes(settings, env)


