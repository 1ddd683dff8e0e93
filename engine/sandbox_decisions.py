"""Sandbox decisions: binding a sandbox to a new session, planning the shutdowns an ending
session or an archived thread implies, and the commands of the sandbox boundary itself.

Pure like the thread decisions: the sandbox a binding refers to is read (fresh from the log)
by the service and passed in.
"""

from __future__ import annotations

from agentledger.engine.context import Context
from agentledger.engine.outcomes import Accepted, Outcome, Unchanged, already_exists, illegal, not_found
from agentledger.engine.sandbox_model import SandboxState
from agentledger.engine.thread_model import ThreadState
from agentledger.schemas.commands import (
    SandboxCreate,
    SandboxDestroy,
    SandboxExec,
    SandboxFork,
    SandboxPause,
    SandboxReportOutcome,
    SandboxResume,
)
from agentledger.schemas.errors import (
    DomainError,
    IllegalTransition,
    IllegalTransitionDetails,
    InvalidCommand,
    InvalidCommandDetails,
    NotHolder,
    NotHolderDetails,
    PathError,
    Unsupported,
    UnsupportedDetails,
)
from agentledger.schemas.events import (
    SandboxCreated,
    SandboxCreateRequested,
    SandboxDestroyed,
    SandboxDestroyRequested,
    SandboxExecFailed,
    SandboxExecFinished,
    SandboxExecRequested,
    SandboxFailed,
    SandboxPaused,
    SandboxPauseRequested,
    SandboxResumed,
    SandboxResumeRequested,
)
from agentledger.schemas.results import SandboxStatusResult
from agentledger.schemas.sandboxes import (
    ProviderCapabilities,
    SandboxAction,
    SandboxBinding,
    SandboxOptions,
    SandboxSpec,
    SandboxStatus,
)

Catalog = dict[str, ProviderCapabilities]


def _invalid(path: str, message: str) -> DomainError:
    return DomainError(InvalidCommand(message=message, details=InvalidCommandDetails(errors=[PathError(path, message)])))


def _provider(catalog: Catalog, name: str, path: str) -> ProviderCapabilities:
    caps = catalog.get(name)
    if caps is None:
        raise _invalid(path, f"unknown sandbox provider {name!r}; this engine has {sorted(catalog)}")
    return caps


def _unsupported(provider: str, operation: str) -> DomainError:
    return DomainError(Unsupported(message=f"provider {provider!r} cannot {operation} a sandbox",
                                   details=UnsupportedDetails(provider=provider, operation=operation)))


def _usable(sandbox: SandboxState | None, sandbox_id: str, command: str) -> SandboxState:
    if sandbox is None or not sandbox.exists:
        raise not_found("sandbox", sandbox_id)
    if sandbox.intent == "destroyed":
        raise illegal("sandbox", sandbox_id, "destroyed", command)
    return sandbox


# -- binding a sandbox to a new session ---------------------------------------------------------
def _claimable(state: ThreadState, sandbox: SandboxState) -> None:
    """A `continue` takes a sandbox over. Every claim on a sandbox is decided by one boundary,
    its own thread's, so two sessions can never both take it: a sandbox of another thread (or of
    none) is forked there instead, and one still held by a session of this thread is refused."""
    sandbox_id = sandbox.sandbox_id
    if sandbox.thread_id != state.thread_id:
        where = f"thread {sandbox.thread_id}" if sandbox.thread_id else "no thread"
        raise _invalid("$.sandbox.sandbox_id", f"sandbox {sandbox_id} belongs to {where}; only a session of its "
                                               "own thread can continue it (fork it, or inherit it, instead)")
    if sandbox_id in state.destroyed_sandboxes:
        raise illegal("sandbox", sandbox_id, "destroyed", "sandbox.resume")
    holder = state.sandbox_holder(sandbox_id)
    if holder is not None:
        raise DomainError(IllegalTransition(
            message=f"sandbox {sandbox_id} is held by session {holder} until its run ends; inherit it to share it",
            details=IllegalTransitionDetails(kind="sandbox", id=sandbox_id, from_="in_use", command="sandbox.resume")))


def bind_sandbox(state: ThreadState, spec: SandboxSpec | None, command: str, ctx: Context) -> SandboxBinding | None:
    """Everything a binding needs is checked here, before anything is recorded (`ctx.sandbox`: the
    sandbox the spec refers to, fresh from the log; `command`: the command that binds it)."""
    sandbox, mint, catalog = ctx.sandbox, ctx.mint, ctx.catalog
    if spec is None:
        return None
    shutdown = spec.shutdown or "destroy"
    match spec.mode:
        case "new":
            provider = spec.provider or "local"
            _provider(catalog, provider, "$.sandbox.provider")
            if spec.sandbox_id is not None and sandbox is not None and sandbox.exists:
                raise already_exists("sandbox", spec.sandbox_id)
            return SandboxBinding(sandbox_id=spec.sandbox_id or mint("sbx_"), mode="new", owned=True, shutdown=shutdown,
                                  provider=provider, options=spec.options or SandboxOptions())
        case "continue":
            assert spec.sandbox_id is not None
            source = _usable(sandbox, spec.sandbox_id, "sandbox.resume")
            _claimable(state, source)
            return SandboxBinding(sandbox_id=spec.sandbox_id, mode="continue", owned=True, shutdown=shutdown,
                                  provider=source.provider, options=source.options)
        case "fork":
            assert spec.sandbox_id is not None
            source = _usable(sandbox, spec.sandbox_id, "sandbox.fork")
            if not _provider(catalog, source.provider, "$.sandbox.sandbox_id").fork:
                raise _unsupported(source.provider, "fork")
            return SandboxBinding(sandbox_id=mint("sbx_"), mode="fork", owned=True, shutdown=shutdown,
                                  provider=source.provider, options=source.options, source_sandbox_id=spec.sandbox_id)
        case _:
            assert spec.sandbox_id is not None
            source = _usable(sandbox, spec.sandbox_id, command)
            return SandboxBinding(sandbox_id=spec.sandbox_id, mode="inherit", owned=False, shutdown=None,
                                  provider=source.provider, options=source.options)


# -- shutdowns ----------------------------------------------------------------------------------
def plan_session_end(state: ThreadState, session_id: str, failing: bool) -> list[SandboxAction]:
    """What happens to sandboxes when `session_id` ends (and, when it fails, the fail_fast
    ancestors that end with it): each owned sandbox follows its policy, and sandboxes held for
    an ending parent under pause-until-parent-close are destroyed."""
    ending = [session_id, *(state.fail_fast_chain(session_id) if failing else [])]
    actions: dict[str, SandboxAction] = {}
    for sid in ending:
        session = state.sessions[sid]
        binding = session.sandbox
        if binding is not None and binding.owned and state.live_sandboxes.get(binding.sandbox_id) == sid:
            policy = binding.shutdown or "destroy"
            parent = session.parent_session_id
            if policy == "destroy":
                actions[binding.sandbox_id] = SandboxAction(sandbox_id=binding.sandbox_id, action="destroy",
                                                            session_id=sid, reason="destroy")
            elif policy == "pause" or (policy == "pause-until-parent-close" and parent is None):
                actions[binding.sandbox_id] = SandboxAction(sandbox_id=binding.sandbox_id, action="pause",
                                                            session_id=sid, reason=policy)
            elif policy == "pause-until-parent-close" and parent in ending:
                actions[binding.sandbox_id] = SandboxAction(sandbox_id=binding.sandbox_id, action="destroy",
                                                            session_id=sid, reason="parent-closed")
            elif policy == "pause-until-parent-close":
                actions[binding.sandbox_id] = SandboxAction(sandbox_id=binding.sandbox_id, action="pause",
                                                            session_id=sid, reason=policy, hold_for=parent)
        for held in state.held_by(sid):
            actions[held] = SandboxAction(sandbox_id=held, action="destroy", session_id=state.live_sandboxes[held],
                                          reason="parent-closed", hold_for=sid)
    return list(actions.values())


def plan_session_start(state: ThreadState, session_id: str) -> list[SandboxAction]:
    """A session that runs again gets its own sandbox back if its policy paused it."""
    binding = state.sessions[session_id].sandbox
    if binding is None or not binding.owned or state.live_sandboxes.get(binding.sandbox_id) != session_id:
        return []
    return [SandboxAction(sandbox_id=binding.sandbox_id, action="resume", session_id=session_id,
                          reason="session-started")]


def plan_thread_archive(state: ThreadState) -> list[SandboxAction]:
    """Archiving releases every sandbox the thread's sessions still own."""
    return [SandboxAction(sandbox_id=sbx, action="destroy", session_id=sid, reason="thread-archived")
            for sbx, sid in state.live_sandboxes.items()]


# -- the sandbox boundary -----------------------------------------------------------------------
def _unchanged(state: SandboxState, status: SandboxStatus) -> Unchanged:
    return Unchanged(SandboxStatusResult(sandbox_id=state.sandbox_id, status=status))


def decide_sandbox_create(state: SandboxState, cmd: SandboxCreate, ctx: Context) -> Outcome:
    assert cmd.sandbox_id is not None
    _provider(ctx.catalog, cmd.provider, "$.provider")
    if state.exists:
        raise already_exists("sandbox", cmd.sandbox_id)
    return Accepted(SandboxCreateRequested(sandbox_id=cmd.sandbox_id, provider=cmd.provider, options=cmd.options,
                                           owner_session_id=cmd.owner_session_id, thread_id=cmd.thread_id))


def decide_sandbox_fork(state: SandboxState, cmd: SandboxFork, ctx: Context) -> Outcome:
    """`ctx.sandbox` is the source, fresh from the log."""
    assert cmd.new_sandbox_id is not None
    src = _usable(ctx.sandbox, cmd.sandbox_id, cmd.NAME)
    if not _provider(ctx.catalog, src.provider, "$.sandbox_id").fork:
        raise _unsupported(src.provider, "fork")
    if state.exists:
        raise already_exists("sandbox", cmd.new_sandbox_id)
    return Accepted(SandboxCreateRequested(sandbox_id=cmd.new_sandbox_id, provider=src.provider, options=src.options,
                                           owner_session_id=cmd.owner_session_id, thread_id=cmd.thread_id,
                                           forked_from=cmd.sandbox_id))


def _existing(state: SandboxState) -> SandboxState:
    if not state.exists:
        raise not_found("sandbox", state.sandbox_id)
    return state


def decide_sandbox_pause(state: SandboxState, cmd: SandboxPause, ctx: Context) -> Outcome:
    _existing(state)
    if state.intent in ("paused", "destroyed"):  # shutting down what is already down is a no-op
        return _unchanged(state, state.intent)
    if not _provider(ctx.catalog, state.provider, "$.sandbox_id").pause:
        raise _unsupported(state.provider, "pause")
    return Accepted(SandboxPauseRequested(sandbox_id=state.sandbox_id, reason=cmd.reason))


def decide_sandbox_resume(state: SandboxState, cmd: SandboxResume, ctx: Context) -> Outcome:
    _existing(state)
    if state.intent == "destroyed":
        raise illegal("sandbox", state.sandbox_id, "destroyed", cmd.NAME)
    if cmd.thread_id is not None and state.thread_id is not None and cmd.thread_id != state.thread_id:
        raise _invalid("$.thread_id", f"sandbox {state.sandbox_id} belongs to thread {state.thread_id}; it never moves")
    new_owner = cmd.owner_session_id is not None and cmd.owner_session_id != state.owner_session_id
    if state.intent == "running" and not new_owner:
        return _unchanged(state, "running")
    return Accepted(SandboxResumeRequested(sandbox_id=state.sandbox_id, owner_session_id=cmd.owner_session_id,
                                           thread_id=cmd.thread_id))


def decide_sandbox_destroy(state: SandboxState, cmd: SandboxDestroy, ctx: Context) -> Outcome:
    _existing(state)
    retry = state.status == "failed" and "destroy" not in state.pending.values()
    if state.intent == "destroyed" and not retry:
        return _unchanged(state, "destroyed")
    return Accepted(SandboxDestroyRequested(sandbox_id=state.sandbox_id, reason=cmd.reason))


def _not_holder(state: SandboxState, session_id: str, holder: str | None, thread: ThreadState) -> DomainError:
    sandbox_id = state.sandbox_id
    if holder is not None:
        why = f"it is held by session {holder}"
    elif state.thread_id != thread.thread_id:
        why = f"it belongs to {f'thread {state.thread_id}' if state.thread_id else 'no thread'}"
    else:
        why = "no session holds it now (its owner's run has ended, or it was never owned)"
    return DomainError(NotHolder(
        message=f"session {session_id} does not hold sandbox {sandbox_id}: {why}; only the session that holds a "
                "sandbox may exec in it",
        details=NotHolderDetails(sandbox_id=sandbox_id, session_id=session_id, holder=holder)))


def decide_sandbox_exec(state: SandboxState, cmd: SandboxExec, ctx: Context) -> Outcome:
    """Only the session that holds the sandbox (`ctx.session_thread`: its thread, fresh from the log)
    may run a program in it, and only while the sandbox is to run: a pause or a destroy already
    requested refuses it. Which programs may run is the effect handler's deployment's to say."""
    _existing(state)
    thread = ctx.session_thread
    assert thread is not None
    holder = thread.sandbox_holder(state.sandbox_id)
    if holder != cmd.session_id:
        raise _not_holder(state, cmd.session_id, holder, thread)
    if state.intent != "running":
        raise illegal("sandbox", state.sandbox_id, state.intent, cmd.NAME)
    return Accepted(SandboxExecRequested(sandbox_id=state.sandbox_id, session_id=cmd.session_id, argv=list(cmd.argv),
                                         timeout_ms=cmd.timeout_ms, stdin=cmd.stdin))


def _report_exec(state: SandboxState, cmd: SandboxReportOutcome) -> Outcome:
    if not cmd.ok:
        return Accepted(SandboxExecFailed(sandbox_id=state.sandbox_id, request_position=cmd.request_position,
                                          error=cmd.error or "provider error", sandbox_status=state.status))
    if cmd.exec is None:
        raise _invalid("$.exec", "a successful exec reports what the program did")
    return Accepted(SandboxExecFinished(sandbox_id=state.sandbox_id, request_position=cmd.request_position,
                                        outcome=cmd.exec, sandbox_status=state.status))


_DONE = {"create": SandboxCreated, "fork": SandboxCreated, "pause": SandboxPaused, "resume": SandboxResumed,
         "destroy": SandboxDestroyed}


def decide_sandbox_report(state: SandboxState, cmd: SandboxReportOutcome, ctx: Context) -> Outcome:
    _existing(state)
    op = state.pending.get(cmd.request_position)
    if op is None:  # already reported (a redelivered effect): nothing more to record
        return _unchanged(state, state.status)
    if op != cmd.op:
        raise _invalid("$.op", f"request at {cmd.request_position} was {op!r}, not {cmd.op!r}")
    if op == "exec":
        return _report_exec(state, cmd)
    if not cmd.ok:
        return Accepted(SandboxFailed(sandbox_id=state.sandbox_id, request_position=cmd.request_position, op=cmd.op,
                                      error=cmd.error or "provider error"))
    if op in ("create", "fork"):
        if not cmd.location:
            raise _invalid("$.location", f"a successful {op} reports the sandbox's location")
        return Accepted(SandboxCreated(sandbox_id=state.sandbox_id, location=cmd.location,
                                       request_position=cmd.request_position))
    event = _DONE[op](sandbox_id=state.sandbox_id, request_position=cmd.request_position)
    return Accepted(event)
