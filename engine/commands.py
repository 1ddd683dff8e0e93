"""What each command needs from the engine, in one place: how its boundary is found, its decision,
the result its reply carries, and the id the engine mints when the client leaves it out.

Everything else follows from the contract: the CLI and the clients from the command's struct
(its fields, its docstring, its `RESULT`), admission from the events each boundary model applies
(`projected_types`), snapshots from the models' annotations. `tests/test_commands.py` checks that
every command of the contract is complete here and answers a repeat exactly as it answered first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from agentledger.engine import decisions as d
from agentledger.engine import results as r
from agentledger.engine import sandbox_decisions as sd
from agentledger.engine import targets as find
from agentledger.engine.context import Context
from agentledger.engine.ids import Minter
from agentledger.engine.outcomes import Outcome
from agentledger.engine.sandbox_model import SandboxState
from agentledger.schemas.commands import (
    COMMANDS,
    Command,
    HandoffBroadcast,
    HandoffSingle,
    ProjectCreate,
    SandboxCreate,
    SandboxDestroy,
    SandboxExec,
    SandboxFork,
    SandboxPause,
    SandboxReportOutcome,
    SandboxResume,
    SessionArchive,
    SessionCancel,
    SessionComplete,
    SessionCreate,
    SessionFail,
    SessionProvideInput,
    SessionRequestInput,
    SessionRestore,
    SessionSpawn,
    SessionStart,
    ThreadArchive,
    ThreadCreate,
    ThreadDelete,
    ThreadUnarchive,
)
from agentledger.schemas.results import Result

C = TypeVar("C", bound=Command)
R = TypeVar("R", bound=Result)
Decide = Callable[[Any, Any, Context], Outcome]
"""(the boundary's state, the command, the context) -> Accepted | Unchanged, or raise DomainError."""


@dataclass(frozen=True)
class Awaits:
    """A command whose reply waits, briefly, for a later event of its boundary: the outcome of what
    it requested (an exec). The reply is the request's, with the outcome folded into its result
    once it is in the log; a repeat of the command id is answered the same way."""

    outcome_at: Callable[[Any, int], int | None]  # (boundary model, request position) -> the outcome's position
    result: Callable[[Any, Any, int], Result]  # (the request's result, the outcome event, its position) -> result


@dataclass(frozen=True)
class CommandSpec(Generic[C, R]):
    command: type[C]
    find: find.Find
    decide: Decide
    result: Callable[[Any], R]  # the reply's result, from the command's event (the first reply and every repeat)
    new_id: tuple[str, str] | None = None  # (field, prefix) the engine mints when the client leaves it out
    awaits: Awaits | None = None  # the reply waits for the request's outcome (engine/service.py)

    def with_id(self, cmd: C, mint: Minter) -> C:
        """Fill the id a client may leave out, before the boundary is chosen (derived from the
        command id, so a retry lands in the same boundary)."""
        if self.new_id is None or getattr(cmd, self.new_id[0]) is not None:
            return cmd
        field, prefix = self.new_id
        return msgspec.structs.replace(cmd, **{field: mint(prefix)})


SPECS: dict[type[Command], CommandSpec[Any, Any]] = {spec.command: spec for spec in (
    CommandSpec(ProjectCreate, find.project, d.decide_project_create, r.project_created, ("project_id", "prj_")),
    CommandSpec(ThreadCreate, find.new_thread, d.decide_thread_create, r.thread_created, ("thread_id", "thd_")),
    CommandSpec(ThreadArchive, find.thread, d.decide_thread_archive, r.thread_status),
    CommandSpec(ThreadUnarchive, find.thread, d.decide_thread_unarchive, r.thread_status),
    CommandSpec(ThreadDelete, find.thread, d.decide_thread_delete, r.thread_status),
    CommandSpec(SessionCreate, find.new_session, d.decide_session_create, r.session_created, ("session_id", "ses_")),
    CommandSpec(SessionStart, find.session, d.decide_session_start, r.session_status),
    CommandSpec(SessionRequestInput, find.session, d.decide_session_request_input, r.session_status),
    CommandSpec(SessionProvideInput, find.session, d.decide_session_provide_input, r.session_status),
    CommandSpec(SessionComplete, find.session, d.decide_session_complete, r.session_completed),
    CommandSpec(SessionCancel, find.session, d.decide_session_cancel, r.session_status),
    CommandSpec(SessionFail, find.session, d.decide_session_fail, r.session_status),
    CommandSpec(SessionArchive, find.session, d.decide_session_archive, r.session_status),
    CommandSpec(SessionRestore, find.session, d.decide_session_restore, r.session_status),
    CommandSpec(SessionSpawn, find.spawn, d.decide_session_spawn, r.session_spawned, ("session_id", "ses_")),
    CommandSpec(HandoffSingle, find.handoff, d.decide_handoff_single, r.handoff_transferred),
    CommandSpec(HandoffBroadcast, find.handoff, d.decide_handoff_broadcast, r.handoff_broadcasted),
    CommandSpec(SandboxCreate, find.sandbox, sd.decide_sandbox_create, r.sandbox_status, ("sandbox_id", "sbx_")),
    CommandSpec(SandboxFork, find.sandbox_fork, sd.decide_sandbox_fork, r.sandbox_status, ("new_sandbox_id", "sbx_")),
    CommandSpec(SandboxPause, find.sandbox, sd.decide_sandbox_pause, r.sandbox_status),
    CommandSpec(SandboxResume, find.sandbox, sd.decide_sandbox_resume, r.sandbox_status),
    CommandSpec(SandboxDestroy, find.sandbox, sd.decide_sandbox_destroy, r.sandbox_status),
    CommandSpec(SandboxExec, find.sandbox_exec, sd.decide_sandbox_exec, r.sandbox_exec,
                awaits=Awaits(SandboxState.exec_outcome_at, r.exec_outcome)),
    CommandSpec(SandboxReportOutcome, find.sandbox, sd.decide_sandbox_report, r.sandbox_status),
)}
assert set(SPECS) == set(COMMANDS.values()), "every command of the contract needs a CommandSpec"
