"""The server's settings, built by the CLI (or a test) and passed to `create_app`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.api.protocol import MAX_CLAIM_WAIT
from runner.limits import (
    MAX_BODY_BYTES,
    MAX_DOCUMENT_BYTES,
    MAX_OPS_PER_BATCH,
    MAX_STATE_VALUE_BYTES,
)

DEFAULT_LEASE_TTL = 30.0
DEFAULT_OFFLINE_GRACE = 600.0
DEFAULT_MAX_BODY = MAX_BODY_BYTES
DEFAULT_MAX_LOST_LEASES = 3
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_KEEPALIVE_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_SESSION_TTL = 12 * 3600.0


@dataclass(frozen=True)
class ServerConfig:
    """Where the server keeps its data, where the repos are, and its timings and limits."""

    data_dir: Path
    repos_dir: Path
    admin_token: str | None = None
    registration_token: str | None = None
    lease_ttl: float = DEFAULT_LEASE_TTL
    offline_grace: float = DEFAULT_OFFLINE_GRACE
    max_body: int = DEFAULT_MAX_BODY
    reap_interval: float | None = None
    log_retention: float | None = None
    """Seconds after a run ended that its logs are removed (None: kept forever)."""
    retention_interval: float = 3600.0
    """Seconds between log retention passes."""
    max_document: int = MAX_DOCUMENT_BYTES
    max_value: int = MAX_STATE_VALUE_BYTES
    max_ops: int = MAX_OPS_PER_BATCH
    max_lost_leases: int = DEFAULT_MAX_LOST_LEASES
    max_claim_wait: float = MAX_CLAIM_WAIT
    session_ttl: float = DEFAULT_SESSION_TTL
    """Seconds a dashboard sign-in lasts."""
    database: str | None = None
    """A PostgreSQL URL (`postgresql://...`); None: SQLite in the data dir."""
    pool_size: int = 16
    """Connections to PostgreSQL this server keeps at most."""
    secrets_key: Path | None = None
    """The secrets key file (None: `<data_dir>/secrets.key`); replicas share one."""

    @property
    def lease_deadline(self) -> float:
        """Seconds after the last renewal at which a lease is given to someone else."""
        return self.lease_ttl + self.offline_grace

    @property
    def reaper_period(self) -> float:
        """How often the reaper looks for expired leases (wakes claimers when it finds some)."""
        if self.reap_interval is not None:
            return self.reap_interval
        return max(0.05, min(1.0, self.lease_deadline / 4))
