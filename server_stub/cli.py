"""`ferry-server` / `python -m server_stub`: serve the control plane; prune, back up; write its
OpenAPI file.

    ferry-server [serve] --data-dir DIR --repos DIR [--config FILE] [--host H] [--port P] ...
    ferry-server prune --data-dir DIR [--older-than 30d] [--dry-run]
    ferry-server backup --data-dir DIR --output FILE
    ferry-server openapi [--output FILE] [--check]
    ferry-server --version

Exit codes: 0 ok, 2 bad usage or configuration, 1 the OpenAPI file is not current (--check),
5 prune could not remove some files or the backup failed (`server_stub.maintenance_cli`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from runner import __version__
from runner.api.protocol import MAX_CLAIM_WAIT
from runner.limits import MAX_DOCUMENT_BYTES, MAX_STATE_VALUE_BYTES
from server_stub.config import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_LEASE_TTL,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_LOST_LEASES,
    DEFAULT_OFFLINE_GRACE,
)

OPENAPI_FILE = Path(__file__).resolve().parent / "openapi.json"
ENV_ADMIN = "FERRY_SERVER_ADMIN_TOKEN"
ENV_REGISTRATION = "FERRY_SERVER_REGISTRATION_TOKEN"
ENV_DATABASE = "FERRY_SERVER_DATABASE"


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than zero")
    return value


def _non_negative(text: str) -> float:
    value = _positive(text) if text.strip() not in ("0", "0.0") else 0.0
    return value


def _bytes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of bytes") from None
    if value < 1024:
        raise argparse.ArgumentTypeError("must be at least 1024")
    return value


USAGE = """ferry-server [serve] --data-dir DIR --repos DIR [options]  (or: --config FILE)
       ferry-server prune --data-dir DIR [--older-than 30d] [--dry-run]
       ferry-server backup --data-dir DIR --output FILE
       ferry-server openapi [--output FILE] [--check]
       ferry-server --version"""
REQUIRED = ("data_dir", "repos")


def _age(text: str) -> float:
    from runner.ages import parse_age

    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _claim_wait(text: str) -> float:
    value = _positive(text)
    if value > MAX_CLAIM_WAIT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_CLAIM_WAIT:g}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line of `ferry-server`."""
    return _parsers()[0]


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The top-level parser and its `serve` subparser (both take the serve options)."""
    from server_stub.maintenance_cli import add_maintenance_commands

    parser = argparse.ArgumentParser(
        prog="ferry-server", usage=USAGE,
        description="Ferry's reference control plane. Without a command it serves the API "
                    "(the same as 'serve').")
    parser.add_argument("--version", action="version", version=f"ferry-server {__version__}")
    # prog: each command's usage says "ferry-server prune", not the whole top-level usage
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", prog="ferry-server")
    serve = sub.add_parser("serve", help="serve the API (the default)",
                           usage=USAGE.splitlines()[0])
    _serve_options(serve)
    _serve_options(parser)
    add_maintenance_commands(sub, _age)
    openapi = sub.add_parser("openapi", help="write or check server_stub/openapi.json")
    openapi.add_argument("--output", type=Path, default=OPENAPI_FILE, metavar="FILE",
                         help="where to write it (default: server_stub/openapi.json)")
    openapi.add_argument("--check", action="store_true",
                         help="exit 1 if the file differs from what the code generates")
    return parser, serve


def _serve_options(p: argparse.ArgumentParser) -> None:
    need = p.add_argument_group("required (on the command line or in --config FILE)")
    need.add_argument("--data-dir", type=Path, metavar="DIR",
                      help="database, logs and generated tokens (required)")
    need.add_argument("--repos", type=Path, metavar="DIR",
                      help="directory of bare git repositories (required)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="these options in a YAML file (keys: data_dir, repos, port, ...); "
                        "flags win over it")
    p.add_argument("--database", metavar="URL",
                   help="a PostgreSQL URL (postgresql://user@host/db; several servers may share"
                        f" it); default: SQLite in the data dir (or ${ENV_DATABASE})")
    p.add_argument("--database-pool", type=_count, default=16, metavar="N",
                   help="most connections to PostgreSQL this server opens (default 16)")
    p.add_argument("--secrets-key", type=Path, metavar="FILE",
                   help="the key that seals stored secrets (default DIR/secrets.key, created at"
                        " first start); every server on one database needs the same key")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; put a TLS proxy in front)")
    p.add_argument("--port", type=int, default=8750, help="0 picks a free port")
    p.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    p.add_argument("--lease-ttl", type=_positive, default=DEFAULT_LEASE_TTL,
                   help="seconds a lease lasts without a heartbeat"
                        f" (default {DEFAULT_LEASE_TTL:g})")
    p.add_argument("--offline-grace", type=_non_negative, default=DEFAULT_OFFLINE_GRACE,
                   help="extra seconds before an expired lease's run is given to another runner"
                        f" (default {DEFAULT_OFFLINE_GRACE:g})")
    p.add_argument("--max-lost-leases", type=_count, default=DEFAULT_MAX_LOST_LEASES,
                   help="expired leases after which a run ends Failed instead of being queued"
                        f" again (default {DEFAULT_MAX_LOST_LEASES})")
    p.add_argument("--max-body", type=_bytes, default=DEFAULT_MAX_BODY,
                   help=f"largest request body in bytes (default {DEFAULT_MAX_BODY})")
    p.add_argument("--max-document", type=_bytes, default=MAX_DOCUMENT_BYTES,
                   help="largest run document, as compact JSON"
                        f" (default {MAX_DOCUMENT_BYTES})")
    p.add_argument("--max-value", type=_bytes, default=MAX_STATE_VALUE_BYTES,
                   help="largest state value or task output value, and most bytes the copy"
                        f" operations of one batch may copy (default {MAX_STATE_VALUE_BYTES})")
    p.add_argument("--max-claim-wait", type=_claim_wait, default=MAX_CLAIM_WAIT,
                   help="longest a claim is held open, whatever the runner asks"
                        f" (default {MAX_CLAIM_WAIT:g})")
    p.add_argument("--header-timeout", type=_positive, default=DEFAULT_HEADER_TIMEOUT,
                   help="seconds a request line and headers may take to arrive"
                        f" (default {DEFAULT_HEADER_TIMEOUT:g})")
    p.add_argument("--keepalive-timeout", type=_positive, default=DEFAULT_KEEPALIVE_TIMEOUT,
                   help="seconds an idle keep-alive connection stays open"
                        f" (default {DEFAULT_KEEPALIVE_TIMEOUT:g})")
    p.add_argument("--max-connections", type=_count, default=DEFAULT_MAX_CONNECTIONS,
                   help="open connections (and requests) past which new requests get 503"
                        f" (default {DEFAULT_MAX_CONNECTIONS})")
    p.add_argument("--log-retention", type=_age, metavar="AGE",
                   help="remove the logs of runs that ended longer ago than AGE (e.g. 90d), "
                        "checked hourly; default: keep them")
    p.add_argument("--forwarded-allow-ips", metavar="IPS",
                   help="comma-separated addresses of reverse proxies whose X-Forwarded-For/"
                        "-Proto headers are trusted (default: 127.0.0.1; '*' trusts any)")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"],
                   help="default info")
    p.add_argument("--no-access-log", action="store_true", help="do not log each request")


def openapi_text() -> str:
    """The OpenAPI document the code generates, as the checked-in file's text."""
    from server_stub.app import create_app
    from server_stub.auth import Secret
    from server_stub.config import ServerConfig

    with tempfile.TemporaryDirectory() as tmp:
        dummy = Secret("x", "0" * 64)
        app = create_app(ServerConfig(data_dir=Path(tmp), repos_dir=Path(tmp)),
                         admin=dummy, registration=dummy)
        doc = app.openapi()
        app.state.core.db.close()
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def _openapi(args: argparse.Namespace) -> int:
    text = openapi_text()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"ferry-server: {args.output} is out of date; run 'ferry-server openapi'",
                  file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when
    # the listener says TCP, and without it Nagle + delayed ACK cost ~40 ms per keep-alive request
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (psycopg's span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _write_port_file(path: Path, port: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{port}\n", encoding="utf-8")
    os.replace(tmp, path)


def _serve(args: argparse.Namespace) -> int:
    missing = [f"--{name.replace('_', '-')}" for name in REQUIRED if getattr(args, name) is None]
    if missing:
        print(f"usage: {USAGE.splitlines()[0]}\nferry-server: error: the following arguments "
              f"are required: {', '.join(missing)} (on the command line or in --config FILE)",
              file=sys.stderr)
        return 2
    if not args.repos.is_dir():
        print(f"ferry-server: error: --repos {args.repos}: not a directory", file=sys.stderr)
        return 2
    import uvicorn

    from server_stub.app import create_app
    from server_stub.auth import ADMIN, REGISTRATION, load_secret
    from server_stub.config import ServerConfig
    from server_stub.connections import guarded_h11, raise_fd_limit

    config = ServerConfig(data_dir=args.data_dir, repos_dir=args.repos,
                          admin_token=os.environ.get(ENV_ADMIN) or None,
                          registration_token=os.environ.get(ENV_REGISTRATION) or None,
                          lease_ttl=args.lease_ttl, offline_grace=args.offline_grace,
                          max_body=args.max_body, log_retention=args.log_retention,
                          max_document=args.max_document, max_value=args.max_value,
                          max_lost_leases=args.max_lost_leases,
                          max_claim_wait=args.max_claim_wait,
                          database=args.database or os.environ.get(ENV_DATABASE) or None,
                          pool_size=args.database_pool, secrets_key=args.secrets_key)
    if config.database and not config.database.startswith(("postgresql://", "postgres://")):
        print("ferry-server: error: --database must be a postgresql:// URL (SQLite needs no "
              "option: it lives in the data dir)", file=sys.stderr)
        return 2
    try:
        admin = load_secret(config.data_dir, ADMIN, config.admin_token)
        registration = load_secret(config.data_dir, REGISTRATION, config.registration_token)
        sock = _bind(args.host, args.port)
    except OSError as exc:
        print(f"ferry-server: error: {exc}", file=sys.stderr)
        return 2
    for secret in (admin, registration):
        if secret.generated:  # shown once; the data dir keeps it (mode 0600) for restarts
            print(f"{secret.name} token (stored in {config.data_dir / (secret.name + '.token')}):"
                  f" {secret.generated}", file=sys.stderr, flush=True)
    try:
        app = create_app(config, admin=admin, registration=registration)
    except Exception as exc:  # the database cannot be opened or migrated: one line, no trace
        from runner.exitcodes import ExitCode

        where = "the database" if config.database else str(config.data_dir / "server.db")
        print(f"ferry-server: error: cannot open {where}: {type(exc).__name__}: "
              f"{_one_line(exc)}", file=sys.stderr)
        return int(ExitCode.STATE)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    if args.port_file:
        _write_port_file(args.port_file, port)
    print(f"listening on http://{host}:{port}", flush=True)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    proxies = {} if args.forwarded_allow_ips is None else {
        "forwarded_allow_ips": args.forwarded_allow_ips}
    raise_fd_limit(args.max_connections)
    server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level, lifespan="on",
                                          access_log=not args.no_access_log,
                                          timeout_graceful_shutdown=3, proxy_headers=True,
                                          http=guarded_h11(args.header_timeout),
                                          timeout_keep_alive=max(1, round(
                                              args.keepalive_timeout)),
                                          limit_concurrency=args.max_connections,
                                          **proxies))
    server.run(sockets=[sock])
    return 0


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments, with `--config FILE`'s settings under the flags given."""
    from server_stub.config_file import ConfigFileError, read_config_file

    parser, serve = _parsers()
    args = parser.parse_args(argv)
    if getattr(args, "config", None) is None:
        return args
    try:
        defaults = read_config_file(args.config, parser)
    except ConfigFileError as exc:
        parser.exit(2, f"ferry-server: error: {exc}\n")
    parser.set_defaults(**defaults)
    serve.set_defaults(**defaults)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `ferry-server`; returns the exit code."""
    args = parse(argv)
    if args.command == "openapi":
        return _openapi(args)
    if args.command in ("prune", "backup"):
        code: int = args.func(args)
        return code
    return _serve(args)
