"""`runtime.options` through the allow-list, for every policy: what is applied, what is refused
and why (a table: option x allow_privileged x allow_mounts)."""

from __future__ import annotations

import itertools

import pytest

from runner.errors import RuntimeRefused
from runner.runtimes.container_options import parse_options

# option items -> (needs allow_privileged, needs allow_mounts, a field that shows it applied)
TABLE: list[tuple[list[str], bool, bool, tuple[str, object]]] = [
    (["--cpus=1.5"], False, False, ("cpus", 1.5)),
    (["--cpus", "2"], False, False, ("cpus", 2.0)),
    (["-m 256m"], False, False, ("memory", "256m")),
    (["--pids-limit 64"], False, False, ("pids", 64)),
    (["--read-only"], False, False, ("read_only", True)),
    (["--tmpfs /run:size=1m"], False, False, ("tmpfs", {"/run": "size=1m"})),
    (["--cap-drop ALL"], False, False, ("cap_drop", ("ALL",))),
    (["--security-opt=no-new-privileges"], False, False,
     ("security_opt", ("no-new-privileges",))),
    (["--hostname box"], False, False, ("hostname", "box")),
    (["--add-host a.local:10.0.0.1"], False, False, ("extra_hosts", {"a.local": "10.0.0.1"})),
    (["--ulimit nofile=1024:2048"], False, False, ("ulimits", (("nofile", 1024, 2048),))),
    (["-u 1000:1000"], False, False, ("user", "1000:1000")),
    (["-w /src"], False, False, ("workdir", "/src")),
    (["--network none"], False, False, ("network", "none")),
    (["--privileged"], True, False, ("privileged", True)),
    (["--cap-add NET_ADMIN"], True, False, ("cap_add", ("NET_ADMIN",))),
    (["--device /dev/fuse"], True, False, ("devices", ("/dev/fuse",))),
    (["--pid=host"], True, False, ("namespaces", {"pid": "host"})),
    (["--network host"], True, False, ("network", "host")),
    (["--security-opt seccomp=unconfined"], True, False,
     ("security_opt", ("seccomp=unconfined",))),
    (["-v /data:/data:ro"], False, True, ("binds", ("/data:/data:ro",))),
    (["--mount type=bind,source=/a,target=/b,readonly"], False, True, ("binds", ("/a:/b:ro",))),
]


@pytest.mark.parametrize(("items", "privileged", "mounts", "applied"), TABLE,
                         ids=[" ".join(t[0]) for t in TABLE])
def test_option_by_policy(items: list[str], privileged: bool, mounts: bool,
                          applied: tuple[str, object]) -> None:
    rows = []
    for allow_privileged, allow_mounts in itertools.product([False, True], repeat=2):
        allowed = (allow_privileged or not privileged) and (allow_mounts or not mounts)
        try:
            parsed = parse_options(items, allow_privileged=allow_privileged,
                                   allow_mounts=allow_mounts)
        except RuntimeRefused as exc:
            rows.append((allow_privileged, allow_mounts, "refused"))
            assert not allowed, str(exc)
            assert "refused by the runner config" in str(exc)
            continue
        rows.append((allow_privileged, allow_mounts, "applied"))
        assert allowed
        assert getattr(parsed, applied[0]) == applied[1]
    print(" ".join(items), rows)


@pytest.mark.parametrize(("items", "fragment"), [
    (["--env A=1"], "'--env' is not an option Ferry applies"),
    (["--rm"], "'--rm' is not an option Ferry applies"),
    (["--cpus"], "'--cpus' needs a value"),
    (["--cpus=lots"], "--cpus 'lots' is not a number"),
    (["--add-host nohost"], "--add-host 'nohost' is not host:ip"),
])
def test_malformed_or_unknown_options_are_refused_by_name(items: list[str],
                                                          fragment: str) -> None:
    with pytest.raises(RuntimeRefused, match=fragment):
        parse_options(items, allow_privileged=True, allow_mounts=True)
