"""The ledger's sandboxes for a `SandboxAgent`: a `BaseSandboxClient` whose sessions are the sandbox
bound to the agent's ledger session, and whose every command is a `sandbox.exec` by that session.

The ledger decides a sandbox's lifecycle, so this client creates and deletes nothing: the sandbox
comes from the session's binding (`LedgerRun.open(sandbox=...)` for the root, `ledger_tool(...,
sandbox=...)` for a sub-agent: mode `new`, `fork` or `continue`, with its shutdown policy), and what
happens to it when the session ends (destroy, pause, keep, pause-until-parent-close) is the
ledger's decision, carried out by its effect handler. `create` waits until the bound sandbox is
created and meant to run, and roots the SDK's workspace at its directory; `delete` leaves it to
the ledger; `resume` reattaches by sandbox id, which is all the serialised state holds.

Every command runs through `sh`: the agent's shell tool runs `sh -lc <command>`, and the SDK's own
(`mkdir`, `ls`, `rm`, `mv`, ...) are sent as `sh -c 'exec "$@"' sh mkdir -p ...`, so `sh` is the one
program the deployment must allow (`--allow-command sh`; it can run any other, so this grants no more).
Files go through exec too (`base64` in `sh`), so a read is bounded by what an exec's outcome keeps
(16 KiB of output: about 12 KiB of file) and a write by an exec's stdin (32 Ki characters: about
24 KiB of file); both land in the log, like every exec, for every reader of the tenant's events.
Workspace snapshots (`SandboxRunConfig(snapshot=...)`, `persist_workspace`, `hydrate_workspace`),
PTY sessions and `run_as` users do not map: the sandbox itself is what the ledger keeps (pause, keep,
fork), and every program in it runs as the sandbox's one unprivileged user."""

from __future__ import annotations

import asyncio
import base64
import io
import uuid
from pathlib import Path
from typing import Literal

from agents.sandbox import (
    ExecResult,
    ExecTimeoutError,
    ExecTransportError,
    Manifest,
    User,
    WorkspaceArchiveReadError,
    WorkspaceArchiveWriteError,
    WorkspaceReadNotFoundError,
)
from agents.sandbox.session import (
    BaseSandboxClient,
    BaseSandboxClientOptions,
    BaseSandboxSession,
    SandboxSession,
    SandboxSessionState,
)
from agents.sandbox.snapshot import NoopSnapshot, SnapshotBase, SnapshotSpec

from agentledger.adapters.openai_agents import seats
from agentledger.adapters.openai_agents.errors import NotInLedgerRun, SandboxUnavailable, Unmapped
from agentledger.client import Ledger, LedgerError, NotFound
from agentledger.schemas.queries import SandboxView
from agentledger.schemas.sandboxes import EXEC_STDIN_MAX, ExecOutcome

BACKEND = "agentledger"
EXEC_TIMEOUT_MS = (1, 3_600_000)  # the contract's bounds on `timeout_ms`
DEFAULT_TIMEOUT_MS = 60_000
NOT_FOUND = 3  # the exit code the read script gives for a missing file
READ = 'test -f "$1" || exit 3; base64 "$1"'
WRITE = 'mkdir -p "$(dirname "$1")" && base64 -d > "$1"'
THROUGH_SH = ("sh", "-c", 'exec "$@"', "sh")  # the SDK's own commands (mkdir, ls, rm, ...): `sh` is the one program to allow


class LedgerSandboxClientOptions(BaseSandboxClientOptions):
    """`ready_timeout`: how long `create`/`resume` wait for the bound sandbox to be created and running."""

    type: Literal["agentledger"] = "agentledger"
    ready_timeout: float = 120.0


class LedgerSandboxSessionState(SandboxSessionState):
    """All a sandbox session needs to be found again: the sandbox and the session that holds it."""

    type: Literal["agentledger"] = "agentledger"
    sandbox_id: str
    holder_session_id: str
    holder_actor: str
    ready_timeout: float = 120.0


async def ready(ledger: Ledger, sandbox_id: str, timeout: float) -> SandboxView:
    """The sandbox once it is created and meant to run (a resume requested: an exec then waits for it
    in log order). Raises SandboxUnavailable when it failed, is being destroyed or is not running in time."""
    async def wait() -> SandboxView:
        pause = 0.05
        while True:
            try:
                view = (await ledger.sandbox.get(sandbox_id=sandbox_id)).sandbox
            except NotFound:  # bound, and its creation not requested yet (the process manager sends it)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            if (view.status == "failed" and not view.pending) or view.intent == "destroyed":
                raise SandboxUnavailable(f"sandbox {sandbox_id} cannot run: {view.status}, {view.intent} ({view.last_error})")
            if view.location is not None and view.intent == "running":
                return view
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    try:
        return await asyncio.wait_for(wait(), timeout)
    except TimeoutError:
        raise SandboxUnavailable(f"sandbox {sandbox_id} is not running after {timeout}s") from None


class LedgerSandboxSession(BaseSandboxSession):
    """A sandbox of the ledger as the SDK's sandbox session: every command a `sandbox.exec`."""

    state: LedgerSandboxSessionState

    def __init__(self, ledger: Ledger, state: LedgerSandboxSessionState) -> None:
        self.ledger, self.state = ledger, state

    async def _ensure_backend_started(self) -> None:
        await ready(self.ledger, self.state.sandbox_id, self.state.ready_timeout)

    async def _outcome(self, argv: list[str], *, timeout: float | None = None, stdin: str = "") -> ExecOutcome:
        """`sandbox.exec` by the holding session, asked again (same command id) until its outcome is known."""
        low, high = EXEC_TIMEOUT_MS
        timeout_ms = DEFAULT_TIMEOUT_MS if timeout is None else min(max(int(timeout * 1000), low), high)
        command_id = f"oa-exec-{uuid.uuid4().hex}"
        try:
            while True:
                result = await self.ledger.sandbox.exec(
                    sandbox_id=self.state.sandbox_id, session_id=self.state.holder_session_id, argv=argv,
                    timeout_ms=timeout_ms, stdin=stdin, command_id=command_id, actor=self.state.holder_actor)
                if result.status != "running":
                    break
        except LedgerError as refused:
            raise ExecTransportError(command=argv, message=f"the ledger refused the exec: {refused}", cause=refused) from refused
        if result.status == "failed" or result.outcome is None:
            raise ExecTransportError(command=argv, message=f"the exec did not run: {result.error}")
        if result.outcome.timed_out or result.outcome.exit_code is None:
            raise ExecTimeoutError(command=argv, timeout_s=timeout_ms / 1000)
        return result.outcome

    async def _exec_internal(self, *command: str | Path, timeout: float | None = None) -> ExecResult:
        argv = [str(part) for part in command]
        outcome = await self._outcome(argv if argv[0] == "sh" else [*THROUGH_SH, *argv], timeout=timeout)
        assert outcome.exit_code is not None
        return ExecResult(stdout=outcome.stdout.text.encode(), stderr=outcome.stderr.text.encode(),
                          exit_code=outcome.exit_code)

    def _prepare_exec_command(self, *command: str | Path, shell: bool | list[str], user: str | User | None) -> list[str]:
        if user:
            raise Unmapped("run_as users: every program in a ledger sandbox runs as its one unprivileged user")
        return super()._prepare_exec_command(*command, shell=shell, user=None)

    async def read(self, path: Path, *, user: str | User | None = None) -> io.IOBase:
        target = await self._validate_path_access(path)
        outcome = await self._outcome(["sh", "-c", READ, "sh", str(target)])
        if outcome.exit_code == NOT_FOUND:
            raise WorkspaceReadNotFoundError(path=path)
        if outcome.exit_code != 0:
            raise WorkspaceArchiveReadError(path=path, context={"reason": outcome.stderr.text})
        if outcome.stdout.kept < outcome.stdout.size:
            raise WorkspaceArchiveReadError(path=path, context={"reason": "larger than an exec's output keeps"})
        return io.BytesIO(base64.b64decode(outcome.stdout.text))

    async def write(self, path: Path, data: io.IOBase, *, user: str | User | None = None) -> None:
        raw = data.read()
        encoded = base64.b64encode(raw.encode() if isinstance(raw, str) else bytes(raw)).decode()
        if len(encoded) > EXEC_STDIN_MAX:
            raise WorkspaceArchiveWriteError(path=path, context={"reason": "larger than an exec's stdin takes"})
        target = await self._validate_path_access(path, for_write=True)
        outcome = await self._outcome(["sh", "-c", WRITE, "sh", str(target)], stdin=encoded)
        if outcome.exit_code != 0:
            raise WorkspaceArchiveWriteError(path=path, context={"reason": outcome.stderr.text})

    async def running(self) -> bool:
        view = (await self.ledger.sandbox.get(sandbox_id=self.state.sandbox_id)).sandbox
        return view.status == "running" and view.intent == "running"

    async def persist_workspace(self) -> io.IOBase:
        raise Unmapped("workspace snapshots: the ledger keeps the sandbox itself (shutdown pause or keep, fork)")

    async def hydrate_workspace(self, data: io.IOBase) -> None:
        raise Unmapped("workspace snapshots: the ledger keeps the sandbox itself (shutdown pause or keep, fork)")


class LedgerSandboxClient(BaseSandboxClient[LedgerSandboxClientOptions | None]):
    """`RunConfig(sandbox=SandboxRunConfig(client=LedgerSandboxClient(ledger)))` for a run under a LedgerRun."""

    backend_id = BACKEND
    supports_default_options = True

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def create(self, *, snapshot: SnapshotSpec | SnapshotBase | None = None, manifest: Manifest | None = None,
                     options: LedgerSandboxClientOptions | None = None) -> SandboxSession:
        """The sandbox bound to the current agent's session, once it runs. The SDK asks for it before
        the agent's start hook, so the session starts here (`session.start`, whose sandbox action
        resumes a sandbox the ledger paused). `snapshot` is not used (the SDK passes its local default
        always): the workspace lives on in the sandbox as its shutdown policy says."""
        frame = seats.current()
        if frame is None:
            raise NotInLedgerRun("a ledger sandbox is the sandbox of the agent's ledger session: run it with LedgerRun")
        seat = frame.seat
        await frame.run.steps.start(seat)  # first: a sandbox paused when the session last ended resumes as it starts
        binding = (await self.ledger.session.get(session_id=seat.session_id)).session.sandbox
        if binding is None or not binding.owned:
            raise Unmapped(f"session {seat.session_id} holds no sandbox of its own; the ledger decides sandboxes: bind "
                           "one (LedgerRun.open(sandbox=...), ledger_tool(..., sandbox=...))")
        timeout = (options or LedgerSandboxClientOptions()).ready_timeout
        view = await ready(self.ledger, binding.sandbox_id, timeout)
        assert view.location is not None
        state = LedgerSandboxSessionState(
            manifest=(manifest or Manifest()).model_copy(update={"root": view.location}, deep=True),
            snapshot=NoopSnapshot(id=binding.sandbox_id), sandbox_id=binding.sandbox_id,
            holder_session_id=seat.session_id, holder_actor=seat.actor, ready_timeout=timeout)
        return self._wrap_session(LedgerSandboxSession(self.ledger, state))

    async def delete(self, session: SandboxSession) -> SandboxSession:
        """Nothing: what happens to the sandbox when its session ends is the ledger's shutdown policy."""
        return session

    async def resume(self, state: SandboxSessionState) -> SandboxSession:
        if not isinstance(state, LedgerSandboxSessionState):
            raise TypeError("LedgerSandboxClient.resume expects a LedgerSandboxSessionState")
        return self._wrap_session(LedgerSandboxSession(self.ledger, state))

    def deserialize_session_state(self, payload: dict[str, object]) -> SandboxSessionState:
        return self._deserialize_session_state_payload(payload, LedgerSandboxSessionState)
