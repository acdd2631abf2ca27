"""The Podman runtime: the Docker runtime's code, talking to Podman's Docker-compatible socket.

Start the socket with `podman system service --time=0` (or the `podman.socket` systemd unit).
Ferry looks for it where Podman puts it: the configured URL first, then
`$XDG_RUNTIME_DIR/podman/podman.sock` (rootless), then `/run/podman/podman.sock` (root).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.errors import RuntimeUnavailable
from runner.runtimes.docker import ClientFactory, DockerRuntime
from runner.runtimes.options import ContainerPolicy

ROOT_SOCKET = Path("/run/podman/podman.sock")


def socket_candidates(xdg_runtime_dir: str | None) -> list[Path]:
    """Where Podman's API socket usually is, most specific first."""
    found: list[Path] = []
    if xdg_runtime_dir:
        found.append(Path(xdg_runtime_dir) / "podman" / "podman.sock")
    found.append(ROOT_SOCKET)
    return found


def find_socket(configured: str | None, *, xdg_runtime_dir: str | None = None) -> str:
    """The API URL to use: `configured` as given, else the first existing usual socket."""
    if configured:
        return configured if "://" in configured else f"unix://{configured}"
    candidates = socket_candidates(xdg_runtime_dir)
    for path in candidates:
        if path.is_socket():
            return f"unix://{path}"
    tried = ", ".join(str(p) for p in candidates)
    raise RuntimeUnavailable(f"podman API socket not found (tried {tried}); start it with "
                             "'podman system service --time=0', or name it in "
                             "runner.containers.podman_socket of the config (-c CONFIG)")


def client_factory(base_url: str, timeout: float = 60.0) -> ClientFactory:
    """A factory of docker SDK clients bound to Podman's socket (the SDK is imported lazily)."""

    def make() -> Any:
        import docker

        return docker.DockerClient(base_url=base_url, version="auto", timeout=int(timeout))

    return make


class PodmanRuntime(DockerRuntime):
    """Runs each task in its own Podman container, through Podman's Docker-compatible API."""

    def __init__(self, *, runner_id: str, socket: str | None = None,
                 xdg_runtime_dir: str | None = None, policy: ContainerPolicy | None = None,
                 grace_seconds: float = 5.0, default_user: str | None = None) -> None:
        self._socket_setting = socket
        self._xdg = xdg_runtime_dir
        super().__init__(self._make_client, runner_id=runner_id, policy=policy,
                         grace_seconds=grace_seconds, engine_name="podman",
                         default_user=default_user)

    def _make_client(self) -> Any:
        return client_factory(find_socket(self._socket_setting, xdg_runtime_dir=self._xdg))()
