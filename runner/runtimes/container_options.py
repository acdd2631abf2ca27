"""`runtime.options`: `docker run`-style options for a task's container, through an allow-list.

Upstream Butterflow passes `options` to its container runtime as strings. Ferry accepts the
options that only narrow or describe the container (limits, read-only root, tmpfs, dropped
capabilities, no-new-privileges, hostname, extra hosts, ulimits, user, workdir, network) and
refuses the ones that widen it — `--privileged`, `--cap-add`, `--device`, host namespaces
(`--pid/--ipc/--uts/--userns/--cgroupns host`, `--network host`), `--security-opt` other than
no-new-privileges — unless the runner allows privileged containers, and bind mounts
(`-v/--volume/--mount`) unless it allows mounts. Anything else is refused by name: an option
Ferry does not apply must not pass for applied.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from runner.errors import RuntimeRefused

# option -> (canonical name, takes a value)
_ALLOWED: dict[str, tuple[str, bool]] = {
    "--cpus": ("cpus", True), "--memory": ("memory", True), "-m": ("memory", True),
    "--pids-limit": ("pids", True), "--shm-size": ("shm_size", True),
    "--read-only": ("read_only", False), "--tmpfs": ("tmpfs", True),
    "--cap-drop": ("cap_drop", True), "--security-opt": ("security_opt", True),
    "--hostname": ("hostname", True), "-h": ("hostname", True),
    "--add-host": ("add_host", True), "--ulimit": ("ulimit", True),
    "--user": ("user", True), "-u": ("user", True),
    "--workdir": ("workdir", True), "-w": ("workdir", True),
    "--network": ("network", True), "--net": ("network", True),
    "--init": ("init", False),
}
_PRIVILEGED = {"--privileged": False, "--cap-add": True, "--device": True, "--pid": True,
               "--ipc": True, "--uts": True, "--userns": True, "--cgroupns": True}
_MOUNTS = {"-v": True, "--volume": True, "--mount": True}
_SAFE_SECURITY_OPTS = {"no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"}


@dataclass(frozen=True)
class ContainerOptions:
    """What `runtime.options` asked for, once checked."""

    cpus: float | None = None
    memory: str | None = None
    pids: int | None = None
    shm_size: str | None = None
    read_only: bool = False
    tmpfs: dict[str, str] = field(default_factory=dict)
    cap_drop: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    hostname: str | None = None
    extra_hosts: dict[str, str] = field(default_factory=dict)
    ulimits: tuple[tuple[str, int, int], ...] = ()
    user: str | None = None
    workdir: str | None = None
    network: str | None = None
    privileged: bool = False
    devices: tuple[str, ...] = ()
    namespaces: dict[str, str] = field(default_factory=dict)
    """`pid`/`ipc`/`uts`/`userns`/`cgroupns` -> mode (only with privileged allowed)."""
    binds: tuple[str, ...] = ()
    """`host:container[:ro]` from -v/--volume/--mount (only with mounts allowed)."""


def _tokens(options: Sequence[str]) -> list[str]:
    """Each item split like a shell would (`"--cpus 2"`, `"--cpus=2"`, or separate items)."""
    out: list[str] = []
    for item in options:
        for token in shlex.split(item):
            if token.startswith("--") and "=" in token:
                name, _, value = token.partition("=")
                out += [name, value]
            else:
                out.append(token)
    return out


def parse_options(options: Sequence[str], *, allow_privileged: bool, allow_mounts: bool,
                  where: str = "runtime.options") -> ContainerOptions:
    """Check `runtime.options` against the allow-list and the runner's policy; RuntimeRefused
    names the first option that is not allowed and why."""
    tokens = _tokens(options)
    found: dict[str, object] = {}
    lists: dict[str, list[str]] = {"tmpfs": [], "cap_drop": [], "cap_add": [],
                                   "security_opt": [], "add_host": [], "ulimit": [],
                                   "devices": [], "binds": []}
    namespaces: dict[str, str] = {}
    privileged = False
    rest = iter(tokens)
    for name in rest:
        def value(option: str = name) -> str:
            item = next(rest, None)
            if item is None:
                raise RuntimeRefused(f"{where}: '{option}' needs a value")
            return item

        if name in _MOUNTS:
            if not allow_mounts:
                raise RuntimeRefused(f"{where}: '{name}' mounts a host path, refused by the "
                                     "runner config (allow_mounts is false)")
            lists["binds"].append(_bind(name, value(), where))
        elif name in _PRIVILEGED:
            if not allow_privileged:
                raise RuntimeRefused(f"{where}: '{name}' widens the container, refused by the "
                                     "runner config (allow_privileged is false)")
            if name == "--privileged":
                privileged = True
            elif name == "--cap-add":
                lists["cap_add"].append(value())
            elif name == "--device":
                lists["devices"].append(value())
            else:
                namespaces[name.lstrip("-")] = value()
        elif name in _ALLOWED:
            key, takes = _ALLOWED[name]
            text = value() if takes else ""
            if key == "network" and text == "host" and not allow_privileged:
                raise RuntimeRefused(f"{where}: '--network host' shares the host's network, "
                                     "refused by the runner config (allow_privileged is false)")
            if key == "security_opt" and text not in _SAFE_SECURITY_OPTS and not allow_privileged:
                raise RuntimeRefused(f"{where}: '--security-opt {text}' is refused by the runner "
                                     "config (only no-new-privileges is allowed)")
            if key in lists:
                lists[key].append(text)
            else:
                found[key] = text if takes else True
        else:
            allowed = ", ".join(sorted({n for n in _ALLOWED if n.startswith("--")}))
            raise RuntimeRefused(f"{where}: '{name}' is not an option Ferry applies "
                                 f"(allowed: {allowed})")
    return _build(found, lists, namespaces, privileged, where)


def _bind(name: str, text: str, where: str) -> str:
    if name != "--mount":
        return text
    parts = dict(p.partition("=")[::2] for p in text.split(","))
    if parts.get("type", "bind") != "bind" or not parts.get("source") or not parts.get("target"):
        raise RuntimeRefused(f"{where}: --mount '{text}': only type=bind,source=...,target=...")
    ro = ":ro" if "readonly" in parts or parts.get("ro") == "true" else ""
    return f"{parts['source']}:{parts['target']}{ro}"


def _number(text: object, kind: type, where: str, name: str) -> float | int:
    try:
        return kind(str(text))
    except ValueError:
        raise RuntimeRefused(f"{where}: {name} '{text}' is not a number") from None


def _build(found: dict[str, object], lists: dict[str, list[str]],
           namespaces: dict[str, str], privileged: bool, where: str) -> ContainerOptions:
    tmpfs = {}
    for item in lists["tmpfs"]:
        path, _, opts = item.partition(":")
        tmpfs[path] = opts
    hosts = {}
    for item in lists["add_host"]:
        host, sep, ip = item.partition(":")
        if not sep:
            raise RuntimeRefused(f"{where}: --add-host '{item}' is not host:ip")
        hosts[host] = ip
    ulimits = []
    for item in lists["ulimit"]:
        kind, _, limits = item.partition("=")
        soft, _, hard = limits.partition(":")
        ulimits.append((kind, int(_number(soft, int, where, "--ulimit")),
                        int(_number(hard or soft, int, where, "--ulimit"))))
    cpus = found.get("cpus")
    pids = found.get("pids")
    return ContainerOptions(
        cpus=float(_number(cpus, float, where, "--cpus")) if cpus is not None else None,
        memory=str(found["memory"]) if "memory" in found else None,
        pids=int(_number(pids, int, where, "--pids-limit")) if pids is not None else None,
        shm_size=str(found["shm_size"]) if "shm_size" in found else None,
        read_only=bool(found.get("read_only")), tmpfs=tmpfs,
        cap_drop=tuple(lists["cap_drop"]), cap_add=tuple(lists["cap_add"]),
        security_opt=tuple(lists["security_opt"]),
        hostname=str(found["hostname"]) if "hostname" in found else None,
        extra_hosts=hosts, ulimits=tuple(ulimits),
        user=str(found["user"]) if "user" in found else None,
        workdir=str(found["workdir"]) if "workdir" in found else None,
        network=str(found["network"]) if "network" in found else None,
        privileged=privileged, devices=tuple(lists["devices"]), namespaces=namespaces,
        binds=tuple(lists["binds"]))
