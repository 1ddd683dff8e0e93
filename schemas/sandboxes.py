"""Sandbox value types: how a session asks for one, what the session records, and the
shutdown actions an ending session or an archived thread hands to the sandbox boundary."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from agentledger.schemas.common import NonNegInt
from agentledger.schemas.ids import END, SandboxId, SessionId

SandboxMode = Literal["new", "continue", "fork", "inherit"]
ShutdownPolicy = Literal["destroy", "pause", "keep", "pause-until-parent-close"]
SandboxStatus = Literal["creating", "running", "paused", "destroyed", "failed"]
SandboxIntent = Literal["running", "paused", "destroyed"]  # what was last asked of a sandbox
SandboxOp = Literal["create", "fork", "pause", "resume", "destroy", "exec"]
ProviderName = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_-]{0,31}" + END)]


class SandboxLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Resource limits one sandbox asks for; each must lie within the deployment's caps, and an
    absent one takes the deployment's default (docs/sandboxes.md)."""

    memory_mb: Annotated[int, Meta(ge=16, le=1_048_576)] | None = None
    pids: Annotated[int, Meta(ge=8, le=4_194_304)] | None = None
    cpus: Annotated[float, Meta(gt=0, le=1024)] | None = None


class SandboxOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Provider options. The local provider reads `repo`/`ref` (a git worktree), `command`
    (a long-running process started in the sandbox) and `limits`. A `ref` never starts with `-`,
    so it cannot reach git as an option."""

    repo: Annotated[str, Meta(max_length=4096)] | None = None
    ref: Annotated[str, Meta(max_length=256, pattern=r"^[^-]")] | None = None
    command: Annotated[list[Annotated[str, Meta(max_length=4096)]], Meta(min_length=1, max_length=256)] | None = None
    limits: SandboxLimits | None = None


class SandboxSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """`sandbox` on session.create / session.spawn. For `new`, `sandbox_id` may name the new
    sandbox; for the other modes it names the existing one."""

    mode: SandboxMode
    sandbox_id: SandboxId | None = None
    shutdown: ShutdownPolicy | None = None
    provider: ProviderName | None = None
    options: SandboxOptions | None = None

    def __post_init__(self) -> None:
        if self.mode != "new" and self.sandbox_id is None:
            raise ValueError(f"sandbox mode {self.mode!r} needs sandbox_id")
        if self.mode == "inherit" and self.shutdown is not None:
            raise ValueError("an inherited sandbox is never owned, so it takes no shutdown policy")
        if self.mode != "new" and (self.provider is not None or self.options is not None):
            raise ValueError(f"provider and options only go with mode 'new'; {self.mode!r} uses the sandbox's own")


class ProviderCapabilities(msgspec.Struct, frozen=True, kw_only=True):
    fork: bool = True
    pause: bool = True


class SandboxBinding(msgspec.Struct, frozen=True, kw_only=True):
    """What a session holds: recorded in the session's creating event."""

    sandbox_id: SandboxId
    mode: SandboxMode
    owned: bool
    shutdown: ShutdownPolicy | None
    provider: str
    options: SandboxOptions = SandboxOptions()
    source_sandbox_id: SandboxId | None = None


class SandboxAction(msgspec.Struct, frozen=True, kw_only=True):
    """A shutdown the sandbox boundary must carry out because a session ended or a thread was
    archived. Decided with the ending, so the audit log says what should happen and why."""

    sandbox_id: SandboxId
    action: Literal["pause", "destroy", "resume"]
    session_id: SessionId
    reason: Literal["destroy", "pause", "pause-until-parent-close", "parent-closed", "thread-archived",
                    "session-started"]
    hold_for: SessionId | None = None  # parent session that destroys it when it ends


# -- exec: a program run in a sandbox, as the log records it ------------------------------------
EXEC_OUTPUT_KEPT = 16 * 1024
"""Bytes of an exec's stdout, and of its stderr, that the log keeps (the first ones); `size` and
`sha256` describe all of it."""
EXEC_OUTPUT_JSON = 24 * 1024
"""The most one stream's kept text may take once written as JSON. Ordinary text takes about its own
size; output full of control characters or invalid UTF-8 takes up to six times more and is kept
shorter, so an outcome always fits in one command (64 KiB) and one event."""
MAX_EXEC_TIMEOUT_MS = 3_600_000
EXEC_STDIN_MAX = 32 * 1024  # characters of text an exec may feed its program
ExecStatus = Literal["running", "finished", "failed"]
LimitHit = Literal["memory", "pids"]
Argv = Annotated[list[Annotated[str, Meta(max_length=4096, pattern=r"^[^\x00]*$")]], Meta(
    min_length=1, max_length=256,
    description="the program and its arguments, one value each; argv[0] must be a program the effect handler's "
                "deployment allows")]


class ExecOutput(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One output stream of an exec: its first `kept` bytes as text (UTF-8; an invalid byte shows as
    U+FFFD), and the `size` and `sha256` of everything the program wrote to it."""

    text: Annotated[str, Meta(max_length=EXEC_OUTPUT_KEPT)] = ""
    size: NonNegInt = 0
    kept: NonNegInt = 0
    sha256: Annotated[str, Meta(pattern=r"^([0-9a-f]{64})?" + END)] = ""

    @property
    def truncated(self) -> bool:
        return self.kept < self.size


class ExecOutcome(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a program run by `sandbox.exec` did. `exit_code` is its exit status, `-N` when signal N
    ended it, null when it was killed at its timeout (`timed_out`). `killed`: its sandbox was
    destroyed while it ran. `limits_hit`: a memory or pids limit the sandbox reached meanwhile."""

    exit_code: int | None
    duration_ms: NonNegInt
    stdout: ExecOutput = ExecOutput()
    stderr: ExecOutput = ExecOutput()
    timed_out: bool = False
    killed: bool = False
    limits_hit: Annotated[list[LimitHit], Meta(max_length=2)] = []
