"""The one error hierarchy of Ferry; the CLI maps each class to a documented exit code."""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.exitcodes import ExitCode


class FerryError(Exception):
    """Base of every error Ferry raises on purpose."""

    exit_code: int = ExitCode.USAGE


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow: where it is and what it is."""

    path: str
    message: str
    line: int | None = None
    column: int | None = None
    severity: str = "error"  # "error" or "warning"

    def render(self) -> str:
        """The problem in Butterflow's `Error at <path>: <message>` form."""
        label = "Error" if self.severity == "error" else "Warning"
        where = f" at {self.path}" if self.path else ""
        pos = f" (line {self.line})" if self.line is not None else ""
        return f"{label}{where}: {self.message}{pos}"


class WorkflowInvalid(FerryError):
    """The workflow file cannot be loaded or fails validation."""

    exit_code: int = ExitCode.USAGE

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        first = problems[0].render() if problems else "invalid workflow"
        super().__init__(f"{source}: {first}")


class ExpressionError(FerryError):
    """A `${{ }}` expression is malformed or cannot be resolved."""

    def __init__(self, expression: str, message: str, where: str = "") -> None:
        self.expression = expression
        self.where = where
        loc = f" in {where}" if where else ""
        super().__init__(f"cannot resolve '${{{{ {expression} }}}}'{loc}: {message}")


class ConditionError(FerryError):
    """A step's `if:` condition is malformed or cannot be evaluated."""

    def __init__(self, condition: str, message: str) -> None:
        self.condition = condition
        self.reason = message
        super().__init__(f"condition '{condition}': {message}")


class TooLarge(FerryError):
    """A value, a file or a change is over a documented limit (`runner.limits`)."""

    exit_code: int = ExitCode.FAILED


class ConfigError(FerryError):
    """Bad configuration: a config file, a flag or an environment variable."""


class UsageError(FerryError):
    """The command line asks for something that cannot be done (unknown id, wrong status...)."""


class StateError(FerryError):
    """The state store is unusable: torn, locked past the timeout, or inconsistent."""

    exit_code: int = ExitCode.STATE


class NoSpace(StateError):
    """The disk (or quota) under a directory Ferry writes to is full."""

    def __init__(self, directory: object, what: str = "") -> None:
        self.directory = str(directory)
        super().__init__(f"no space left on device under {directory}" + (f" ({what})" if what
                                                                         else ""))


class UnsafeId(StateError, ValueError):
    """An id that would not be one path segment (empty, `.`, `..`, a slash or a NUL byte)."""


class UnknownRun(UsageError):
    """No run has this id."""


@dataclass
class SeqGap(FerryError):
    """A diff arrived out of order for its writer; `expected` is the seq the store wants next."""

    writer: str
    got: int
    expected: int
    exit_code: int = field(default=ExitCode.STATE, init=False)

    def __str__(self) -> str:
        return f"writer {self.writer}: got seq {self.got}, expected {self.expected}"


class RuntimeUnavailable(FerryError):
    """A task's runtime cannot start it (engine down, image missing, option refused)."""


class RuntimeRefused(RuntimeUnavailable):
    """The runner's config forbids what the workflow asks for (privileged, host mounts...)."""


class ControlPlaneError(FerryError):
    """Talking to the control plane failed."""

    exit_code: int = ExitCode.CONTROL


class TransientError(ControlPlaneError):
    """Worth retrying: connection refused/reset, timeout, 5xx, 429."""


class PermanentError(ControlPlaneError):
    """Not worth retrying: 4xx other than the ones with their own class."""

    def __init__(self, message: str, status: int | None = None, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class AuthError(PermanentError):
    """401/403: the token is missing, wrong or not allowed to do this."""


class LeaseLost(ControlPlaneError):
    """The run's lease expired or was superseded (409 fencing): stop its work, keep the journal."""


class Conflict(PermanentError):
    """409 other than a lost lease: seq gap or log offset mismatch; the body says where to go on."""

    def __init__(self, message: str, status: int | None = 409, body: object = None, *,
                 code: str = "", expected_seq: int | None = None,
                 offset: int | None = None) -> None:
        super().__init__(message, status, body)
        self.code = code
        self.expected_seq = expected_seq
        self.offset = offset


class SecretInvalid(UsageError):
    """A secret name or value Ferry refuses (bad name, shorter than 4 characters, NUL byte);
    the message names the secret, never its value."""
