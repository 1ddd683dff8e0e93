"""The client's typed surface, generated from the contract (schemas/) by
`python -m agentledger.client.codegen`: do not edit (tests/test_client.py fails while it is out of
date). One exception class per error code, each carrying its typed `details`; one method per
command and query, grouped by the name's first part; `<name>_all` iterates every page of a paged
query."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol, TypeVar

from agentledger.client.errors import LedgerError
from agentledger.schemas import commands, common, errors, events, queries, results, sandboxes

R = TypeVar("R")


class Sender(Protocol):
    """What the groups send through (`Ledger`)."""

    async def command(self, cls: type[commands.Command], result: type[R], fields: dict[str, Any]) -> R: ...

    async def query(self, cls: type[queries.Query], result: type[R], fields: dict[str, Any]) -> R: ...

    def pages(self, cls: type[queries.Query], result: type[Any], fields: dict[str, Any], items: str) -> AsyncIterator[Any]: ...


class Group:
    def __init__(self, sender: Sender) -> None:
        self._sender = sender


class InvalidCommand(LedgerError):
    """The engine's `invalid_command` error."""

    code = "invalid_command"
    details: errors.InvalidCommandDetails


class UnknownCommand(LedgerError):
    """The engine's `unknown_command` error."""

    code = "unknown_command"
    details: errors.UnknownCommandDetails


class NotFound(LedgerError):
    """The engine's `not_found` error."""

    code = "not_found"
    details: errors.EntityDetails


class AlreadyExists(LedgerError):
    """The engine's `already_exists` error."""

    code = "already_exists"
    details: errors.EntityDetails


class ThreadClosed(LedgerError):
    """The engine's `thread_closed` error."""

    code = "thread_closed"
    details: errors.ThreadClosedDetails


class ThreadNotEmpty(LedgerError):
    """The engine's `thread_not_empty` error."""

    code = "thread_not_empty"
    details: errors.ThreadNotEmptyDetails


class IllegalTransition(LedgerError):
    """The engine's `illegal_transition` error."""

    code = "illegal_transition"
    details: errors.IllegalTransitionDetails


class CapacityExceeded(LedgerError):
    """The engine's `capacity_exceeded` error."""

    code = "capacity_exceeded"
    details: errors.CapacityDetails


class CrossThread(LedgerError):
    """The engine's `cross_thread` error."""

    code = "cross_thread"
    details: errors.CrossDetails


class CrossProject(LedgerError):
    """The engine's `cross_project` error."""

    code = "cross_project"
    details: errors.CrossDetails


class VersionConflict(LedgerError):
    """The engine's `version_conflict` error."""

    code = "version_conflict"
    details: errors.VersionConflictDetails


class HandoffRejected(LedgerError):
    """The engine's `handoff_rejected` error."""

    code = "handoff_rejected"
    details: errors.HandoffRejectedDetails


class Unsupported(LedgerError):
    """The engine's `unsupported` error."""

    code = "unsupported"
    details: errors.UnsupportedDetails


class NotHolder(LedgerError):
    """The engine's `not_holder` error."""

    code = "not_holder"
    details: errors.NotHolderDetails


class Forbidden(LedgerError):
    """The engine's `forbidden` error."""

    code = "forbidden"
    details: errors.ForbiddenDetails


class Conflict(LedgerError):
    """The engine's `conflict` error."""

    code = "conflict"
    details: errors.ConflictDetails


class Unavailable(LedgerError):
    """The engine's `unavailable` error."""

    code = "unavailable"
    details: errors.ErrorDetails


class RateLimited(LedgerError):
    """The engine's `rate_limited` error."""

    code = "rate_limited"
    details: errors.RateLimitedDetails


class QuotaExceeded(LedgerError):
    """The engine's `quota_exceeded` error."""

    code = "quota_exceeded"
    details: errors.QuotaExceededDetails


class Internal(LedgerError):
    """The engine's `internal` error."""

    code = "internal"
    details: errors.TraceDetails


ERRORS: dict[str, type[LedgerError]] = {
    "invalid_command": InvalidCommand,
    "unknown_command": UnknownCommand,
    "not_found": NotFound,
    "already_exists": AlreadyExists,
    "thread_closed": ThreadClosed,
    "thread_not_empty": ThreadNotEmpty,
    "illegal_transition": IllegalTransition,
    "capacity_exceeded": CapacityExceeded,
    "cross_thread": CrossThread,
    "cross_project": CrossProject,
    "version_conflict": VersionConflict,
    "handoff_rejected": HandoffRejected,
    "unsupported": Unsupported,
    "not_holder": NotHolder,
    "forbidden": Forbidden,
    "conflict": Conflict,
    "unavailable": Unavailable,
    "rate_limited": RateLimited,
    "quota_exceeded": QuotaExceeded,
    "internal": Internal,
}


def exception(error: errors.AnyError) -> LedgerError:
    """The client's exception for an error body of the protocol."""
    cls = ERRORS[str(type(error).__struct_config__.tag)]
    return cls(error.message, retryable=error.retryable, details=error.details, error=error)


class HandoffGroup(Group):
    """`handoff.*`."""

    async def broadcast(
        self,
        *,
        source_session_id: str,
        recipients: builtins.list[common.Actor | str],
        expected_owner_version: int,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.HandoffBroadcastResult:
        """Broadcast a session to several actors and wait for all of them."""
        return await self._sender.command(
            commands.HandoffBroadcast,
            results.HandoffBroadcastResult,
            {
                "source_session_id": source_session_id,
                "recipients": recipients,
                "expected_owner_version": expected_owner_version,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def single(
        self,
        *,
        source_session_id: str,
        recipient: common.Actor | str,
        expected_owner_version: int,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.HandoffSingleResult:
        """Hand a session over to one actor."""
        return await self._sender.command(
            commands.HandoffSingle,
            results.HandoffSingleResult,
            {
                "source_session_id": source_session_id,
                "recipient": recipient,
                "expected_owner_version": expected_owner_version,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )


class ProjectGroup(Group):
    """`project.*`."""

    async def create(
        self,
        *,
        project_id: str | None = None,
        name: str,
        config: common.ProjectConfig | None = None,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.ProjectCreateResult:
        """Create a project."""
        return await self._sender.command(
            commands.ProjectCreate,
            results.ProjectCreateResult,
            {
                "project_id": project_id,
                "name": name,
                "config": config,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )


class SandboxGroup(Group):
    """`sandbox.*`."""

    async def create(
        self,
        *,
        sandbox_id: str | None = None,
        provider: str = "local",
        options: sandboxes.SandboxOptions | None = None,
        owner_session_id: str | None = None,
        thread_id: str | None = None,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.SandboxStatusResult:
        """Create a sandbox."""
        return await self._sender.command(
            commands.SandboxCreate,
            results.SandboxStatusResult,
            {
                "sandbox_id": sandbox_id,
                "provider": provider,
                "options": options,
                "owner_session_id": owner_session_id,
                "thread_id": thread_id,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def destroy(
        self,
        *,
        sandbox_id: str,
        reason: str = "",
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.SandboxStatusResult:
        """Destroy a sandbox."""
        return await self._sender.command(
            commands.SandboxDestroy,
            results.SandboxStatusResult,
            {
                "sandbox_id": sandbox_id,
                "reason": reason,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def exec(
        self,
        *,
        sandbox_id: str,
        session_id: str,
        argv: builtins.list[str],
        timeout_ms: int = 60000,
        stdin: str = "",
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.SandboxExecResult:
        """Run a program in a sandbox as the session that holds it; the reply waits briefly for its outcome."""
        return await self._sender.command(
            commands.SandboxExec,
            results.SandboxExecResult,
            {
                "sandbox_id": sandbox_id,
                "session_id": session_id,
                "argv": argv,
                "timeout_ms": timeout_ms,
                "stdin": stdin,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def fork(
        self,
        *,
        sandbox_id: str,
        new_sandbox_id: str | None = None,
        owner_session_id: str | None = None,
        thread_id: str | None = None,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.SandboxStatusResult:
        """Fork a sandbox into a new one."""
        return await self._sender.command(
            commands.SandboxFork,
            results.SandboxStatusResult,
            {
                "sandbox_id": sandbox_id,
                "new_sandbox_id": new_sandbox_id,
                "owner_session_id": owner_session_id,
                "thread_id": thread_id,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def pause(
        self,
        *,
        sandbox_id: str,
        reason: str = "",
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.SandboxStatusResult:
        """Pause a sandbox."""
        return await self._sender.command(
            commands.SandboxPause,
            results.SandboxStatusResult,
            {
                "sandbox_id": sandbox_id,
                "reason": reason,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def report_outcome(
        self,
        *,
        sandbox_id: str,
        request_position: int,
        op: Literal["create", "fork", "pause", "resume", "destroy", "exec"],
        ok: bool,
        location: str | None = None,
        error: str | None = None,
        exec: sandboxes.ExecOutcome | None = None,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.SandboxStatusResult:
        """Sent by effect handlers: what the provider did with a `*_requested` event."""
        return await self._sender.command(
            commands.SandboxReportOutcome,
            results.SandboxStatusResult,
            {
                "sandbox_id": sandbox_id,
                "request_position": request_position,
                "op": op,
                "ok": ok,
                "location": location,
                "error": error,
                "exec": exec,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def resume(
        self,
        *,
        sandbox_id: str,
        owner_session_id: str | None = None,
        thread_id: str | None = None,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.SandboxStatusResult:
        """Resume a paused sandbox."""
        return await self._sender.command(
            commands.SandboxResume,
            results.SandboxStatusResult,
            {
                "sandbox_id": sandbox_id,
                "owner_session_id": owner_session_id,
                "thread_id": thread_id,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def get(
        self,
        *,
        sandbox_id: str,
        min_position: int | None = None,
    ) -> queries.SandboxResult:
        """Show one sandbox."""
        return await self._sender.query(
            queries.SandboxGet,
            queries.SandboxResult,
            {
                "sandbox_id": sandbox_id,
                "min_position": min_position,
            },
        )

    async def list_live(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        min_position: int | None = None,
    ) -> queries.SandboxListResult:
        """List the deployment's sandboxes, every tenant's, created and not destroyed (the deployment's only)."""
        return await self._sender.query(
            queries.SandboxListLive,
            queries.SandboxListResult,
            {
                "after": after,
                "limit": limit,
                "min_position": min_position,
            },
        )

    def list_live_all(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        min_position: int | None = None,
    ) -> AsyncIterator[queries.LiveSandbox]:
        """Every item of `sandbox.list_live`, page after page, from `after` on."""
        return self._sender.pages(
            queries.SandboxListLive,
            queries.SandboxListResult,
            {
                "after": after,
                "limit": limit,
                "min_position": min_position,
            },
            "sandboxes",
        )


class SessionGroup(Group):
    """`session.*`."""

    async def archive(
        self,
        *,
        session_id: str,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.SessionStatusResult:
        """Archive a session."""
        return await self._sender.command(
            commands.SessionArchive,
            results.SessionStatusResult,
            {
                "session_id": session_id,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def cancel(
        self,
        *,
        session_id: str,
        reason: str = "",
        usage: int = 0,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.SessionStatusResult:
        """Interrupt a session; it returns to idle."""
        return await self._sender.command(
            commands.SessionCancel,
            results.SessionStatusResult,
            {
                "session_id": session_id,
                "reason": reason,
                "usage": usage,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def complete(
        self,
        *,
        session_id: str,
        summary: common.Summary,
        usage: int = 0,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.SessionCompleteResult:
        """Complete a session with its summary."""
        return await self._sender.command(
            commands.SessionComplete,
            results.SessionCompleteResult,
            {
                "session_id": session_id,
                "summary": summary,
                "usage": usage,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def create(
        self,
        *,
        session_id: str | None = None,
        thread_id: str,
        owner: common.Actor | str,
        budget: int | None = None,
        sandbox: sandboxes.SandboxSpec | None = None,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.SessionCreateResult:
        """Create an idle session in a thread."""
        return await self._sender.command(
            commands.SessionCreate,
            results.SessionCreateResult,
            {
                "session_id": session_id,
                "thread_id": thread_id,
                "owner": owner,
                "budget": budget,
                "sandbox": sandbox,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def fail(
        self,
        *,
        session_id: str,
        reason: str = "",
        usage: int = 0,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.SessionStatusResult:
        """Mark a session failed."""
        return await self._sender.command(
            commands.SessionFail,
            results.SessionStatusResult,
            {
                "session_id": session_id,
                "reason": reason,
                "usage": usage,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def provide_input(
        self,
        *,
        session_id: str,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.SessionStatusResult:
        """Resume a session waiting for input."""
        return await self._sender.command(
            commands.SessionProvideInput,
            results.SessionStatusResult,
            {
                "session_id": session_id,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def request_input(
        self,
        *,
        session_id: str,
        prompt: str = "",
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.SessionStatusResult:
        """Pause a session for human input."""
        return await self._sender.command(
            commands.SessionRequestInput,
            results.SessionStatusResult,
            {
                "session_id": session_id,
                "prompt": prompt,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def restore(
        self,
        *,
        session_id: str,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.SessionStatusResult:
        """Restore an archived session."""
        return await self._sender.command(
            commands.SessionRestore,
            results.SessionStatusResult,
            {
                "session_id": session_id,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def spawn(
        self,
        *,
        parent_session_id: str,
        session_id: str | None = None,
        thread_id: str | None = None,
        agent: common.Actor | str,
        failure_mode: Literal["delegate", "fail_fast"] = "delegate",
        budget: int | None = None,
        sandbox: sandboxes.SandboxSpec | None = None,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.SessionSpawnResult:
        """Spawn a child session for an agent."""
        return await self._sender.command(
            commands.SessionSpawn,
            results.SessionSpawnResult,
            {
                "parent_session_id": parent_session_id,
                "session_id": session_id,
                "thread_id": thread_id,
                "agent": agent,
                "failure_mode": failure_mode,
                "budget": budget,
                "sandbox": sandbox,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def start(
        self,
        *,
        session_id: str,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.SessionStatusResult:
        """Start a session."""
        return await self._sender.command(
            commands.SessionStart,
            results.SessionStatusResult,
            {
                "session_id": session_id,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def get(
        self,
        *,
        session_id: str,
        min_position: int | None = None,
    ) -> queries.SessionResult:
        """Show one session."""
        return await self._sender.query(
            queries.SessionGet,
            queries.SessionResult,
            {
                "session_id": session_id,
                "min_position": min_position,
            },
        )

    async def tree(
        self,
        *,
        session_id: str,
        min_position: int | None = None,
    ) -> queries.TreeResult:
        """Show the delegation tree under a session."""
        return await self._sender.query(
            queries.SessionTree,
            queries.TreeResult,
            {
                "session_id": session_id,
                "min_position": min_position,
            },
        )


class ThreadGroup(Group):
    """`thread.*`."""

    async def archive(
        self,
        *,
        thread_id: str,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.ThreadStatusResult:
        """Archive a thread (refused while a session is busy)."""
        return await self._sender.command(
            commands.ThreadArchive,
            results.ThreadStatusResult,
            {
                "thread_id": thread_id,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def create(
        self,
        *,
        thread_id: str | None = None,
        project_id: str,
        title: str = "",
        mode: Literal["new", "fork"] = "new",
        source_thread_id: str | None = None,
        at_position: int | None = None,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.ThreadCreateResult:
        """Create a thread in a project."""
        return await self._sender.command(
            commands.ThreadCreate,
            results.ThreadCreateResult,
            {
                "thread_id": thread_id,
                "project_id": project_id,
                "title": title,
                "mode": mode,
                "source_thread_id": source_thread_id,
                "at_position": at_position,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def delete(
        self,
        *,
        thread_id: str,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.ThreadStatusResult:
        """Delete a thread (refused while it has sessions)."""
        return await self._sender.command(
            commands.ThreadDelete,
            results.ThreadStatusResult,
            {
                "thread_id": thread_id,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def unarchive(
        self,
        *,
        thread_id: str,
        actor: common.Actor | str | None = None,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> results.ThreadStatusResult:
        """Reopen an archived thread."""
        return await self._sender.command(
            commands.ThreadUnarchive,
            results.ThreadStatusResult,
            {
                "thread_id": thread_id,
                "actor": actor,
                "command_id": command_id,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
            },
        )

    async def get(
        self,
        *,
        thread_id: str,
        min_position: int | None = None,
    ) -> queries.ThreadResult:
        """Show a thread and its sessions."""
        return await self._sender.query(
            queries.ThreadGet,
            queries.ThreadResult,
            {
                "thread_id": thread_id,
                "min_position": min_position,
            },
        )

    async def list(
        self,
        *,
        project_id: str | None = None,
        status: Literal["open", "archived", "deleted"] | None = None,
        after: int = 0,
        limit: int = 100,
        min_position: int | None = None,
    ) -> queries.ThreadListResult:
        """List a project's threads (without a project id, the tenant's), oldest first, a page at a time."""
        return await self._sender.query(
            queries.ThreadList,
            queries.ThreadListResult,
            {
                "project_id": project_id,
                "status": status,
                "after": after,
                "limit": limit,
                "min_position": min_position,
            },
        )

    def list_all(
        self,
        *,
        project_id: str | None = None,
        status: Literal["open", "archived", "deleted"] | None = None,
        after: int = 0,
        limit: int = 100,
        min_position: int | None = None,
    ) -> AsyncIterator[queries.ThreadRow]:
        """Every item of `thread.list`, page after page, from `after` on."""
        return self._sender.pages(
            queries.ThreadList,
            queries.ThreadListResult,
            {
                "project_id": project_id,
                "status": status,
                "after": after,
                "limit": limit,
                "min_position": min_position,
            },
            "threads",
        )


class EventsGroup(Group):
    """`events.*`."""

    async def read(
        self,
        *,
        thread_id: str | None = None,
        sandbox_id: str | None = None,
        sandboxes: bool = False,
        after: int = 0,
        before: int | None = None,
        limit: int = 100,
        min_position: int | None = None,
    ) -> queries.EventsPage:
        """Read one page of the event log."""
        return await self._sender.query(
            queries.EventsRead,
            queries.EventsPage,
            {
                "thread_id": thread_id,
                "sandbox_id": sandbox_id,
                "sandboxes": sandboxes,
                "after": after,
                "before": before,
                "limit": limit,
                "min_position": min_position,
            },
        )

    def read_all(
        self,
        *,
        thread_id: str | None = None,
        sandbox_id: str | None = None,
        sandboxes: bool = False,
        after: int = 0,
        before: int | None = None,
        limit: int = 100,
        min_position: int | None = None,
    ) -> AsyncIterator[events.StoredEvent]:
        """Every item of `events.read`, page after page, from `after` on."""
        return self._sender.pages(
            queries.EventsRead,
            queries.EventsPage,
            {
                "thread_id": thread_id,
                "sandbox_id": sandbox_id,
                "sandboxes": sandboxes,
                "after": after,
                "before": before,
                "limit": limit,
                "min_position": min_position,
            },
            "events",
        )


class QuarantineGroup(Group):
    """`quarantine.*`."""

    async def list(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        min_position: int | None = None,
    ) -> queries.QuarantineResult:
        """List log messages skipped because they failed admission (an operator's query)."""
        return await self._sender.query(
            queries.QuarantineList,
            queries.QuarantineResult,
            {
                "after": after,
                "limit": limit,
                "min_position": min_position,
            },
        )

    def list_all(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        min_position: int | None = None,
    ) -> AsyncIterator[queries.Quarantined]:
        """Every item of `quarantine.list`, page after page, from `after` on."""
        return self._sender.pages(
            queries.QuarantineList,
            queries.QuarantineResult,
            {
                "after": after,
                "limit": limit,
                "min_position": min_position,
            },
            "entries",
        )


class Groups:
    """Every group of the contract, as attributes."""

    def __init__(self, sender: Sender) -> None:
        self.handoff = HandoffGroup(sender)
        self.project = ProjectGroup(sender)
        self.sandbox = SandboxGroup(sender)
        self.session = SessionGroup(sender)
        self.thread = ThreadGroup(sender)
        self.events = EventsGroup(sender)
        self.quarantine = QuarantineGroup(sender)
