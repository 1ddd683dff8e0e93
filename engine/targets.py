"""Which boundary decides a command, and what else its decision must know, read before deciding.

A command names its way of finding its boundary in its `CommandSpec` (engine/commands.py); the
ways are few (by its own id, by a session's thread, ...), so a new command usually reuses one.
What a decision reads beyond its boundary is read fresh from the log where a refusal may rest on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from agentledger.engine.boundary_model import BoundaryModel
from agentledger.engine.context import Context
from agentledger.engine.outcomes import already_exists, not_found
from agentledger.engine.repository import Repository
from agentledger.engine.sandbox_model import SandboxState
from agentledger.engine.store import EventStore
from agentledger.engine.thread_model import ThreadState
from agentledger.schemas.commands import (
    HandoffBroadcast,
    HandoffSingle,
    ProjectCreate,
    SandboxExec,
    SandboxFork,
    SessionCommand,
    SessionCreate,
    SessionSpawn,
    ThreadCreate,
)


class Lookup:
    """The reads a command's boundary and context need: the repository and the log behind it."""

    def __init__(self, store: EventStore, models: Repository) -> None:
        self.store = store
        self.models = models

    async def thread_of_session(self, tenant: str, session_id: str) -> ThreadState | None:
        thread_id = await self.models.resolve_session(self.store, tenant, session_id)
        return None if thread_id is None else await self.models.loaded(self.store, self.models.thread(tenant, thread_id))

    async def session_thread(self, tenant: str, session_id: str) -> ThreadState:
        thread = await self.thread_of_session(tenant, session_id)
        if thread is None:
            raise not_found("session", session_id)
        return thread

    async def not_elsewhere(self, tenant: str, session_id: str, thread_id: str) -> None:
        """Session ids are unique per tenant: a client id already used in another thread is refused
        here (from its claim in the log). Two first uses racing in different threads are stopped by
        the claim appended before the introducing event (`CommandService._claim`)."""
        found = await self.models.resolve_session(self.store, tenant, session_id)
        if found is not None and found != thread_id:
            raise already_exists("session", session_id)

    async def fresh_sandbox(self, tenant: str, sandbox_id: str | None) -> SandboxState | None:
        if sandbox_id is None:
            return None
        sandbox = self.models.sandbox(tenant, sandbox_id)
        await self.models.refresh(self.store, sandbox)
        return sandbox


Target = tuple[BoundaryModel, Context]
Find = Callable[[Lookup, str, Any, Context], Awaitable[Target]]
"""(lookup, tenant, command, context) -> the boundary that decides the command, and its context."""


async def project(lookup: Lookup, tenant: str, cmd: ProjectCreate, ctx: Context) -> Target:
    assert cmd.project_id
    return lookup.models.project(tenant, cmd.project_id), ctx


async def new_thread(lookup: Lookup, tenant: str, cmd: ThreadCreate, ctx: Context) -> Target:
    """The new thread, its project (existence, caps) and, for a fork, the source on the log's latest."""
    assert cmd.thread_id
    models = lookup.models
    project_model = await models.loaded(lookup.store, models.project(tenant, cmd.project_id))
    source = None
    if cmd.source_thread_id is not None:
        source = models.thread(tenant, cmd.source_thread_id)
        await models.refresh(lookup.store, source)
    return models.thread(tenant, cmd.thread_id), replace(ctx, project=project_model, source_thread=source)


async def thread(lookup: Lookup, tenant: str, cmd: Any, ctx: Context) -> Target:
    """A command naming its thread (`cmd.thread_id`)."""
    return lookup.models.thread(tenant, cmd.thread_id), ctx


async def new_session(lookup: Lookup, tenant: str, cmd: SessionCreate, ctx: Context) -> Target:
    assert cmd.session_id
    await lookup.not_elsewhere(tenant, cmd.session_id, cmd.thread_id)
    sandbox = await lookup.fresh_sandbox(tenant, cmd.sandbox.sandbox_id if cmd.sandbox else None)
    return lookup.models.thread(tenant, cmd.thread_id), replace(ctx, sandbox=sandbox)


async def spawn(lookup: Lookup, tenant: str, cmd: SessionSpawn, ctx: Context) -> Target:
    """The parent's thread; with `thread_id` that thread, told where the parent lives if elsewhere."""
    sandbox = await lookup.fresh_sandbox(tenant, cmd.sandbox.sandbox_id if cmd.sandbox else None)
    ctx = replace(ctx, sandbox=sandbox)
    parent_thread = await lookup.thread_of_session(tenant, cmd.parent_session_id)
    if cmd.thread_id is not None:
        named = lookup.models.thread(tenant, cmd.thread_id)
        if parent_thread is not None and parent_thread.thread_id != cmd.thread_id:
            return named, replace(ctx, parent_location=(parent_thread.thread_id, parent_thread.project_id))
        return named, ctx
    if parent_thread is None:
        raise not_found("session", cmd.parent_session_id)
    assert cmd.session_id
    await lookup.not_elsewhere(tenant, cmd.session_id, parent_thread.thread_id)
    return parent_thread, ctx


async def handoff(lookup: Lookup, tenant: str, cmd: HandoffSingle | HandoffBroadcast, ctx: Context) -> Target:
    return await lookup.session_thread(tenant, cmd.source_session_id), ctx


async def session(lookup: Lookup, tenant: str, cmd: SessionCommand, ctx: Context) -> Target:
    return await lookup.session_thread(tenant, cmd.session_id), ctx


async def sandbox(lookup: Lookup, tenant: str, cmd: Any, ctx: Context) -> Target:
    """A command naming its sandbox (`cmd.sandbox_id`, minted for a new one)."""
    assert cmd.sandbox_id
    return lookup.models.sandbox(tenant, cmd.sandbox_id), ctx


async def sandbox_fork(lookup: Lookup, tenant: str, cmd: SandboxFork, ctx: Context) -> Target:
    """The new sandbox, and its source fresh from the log."""
    assert cmd.new_sandbox_id
    source = await lookup.fresh_sandbox(tenant, cmd.sandbox_id)
    return lookup.models.sandbox(tenant, cmd.new_sandbox_id), replace(ctx, sandbox=source)


async def sandbox_exec(lookup: Lookup, tenant: str, cmd: SandboxExec, ctx: Context) -> Target:
    """The sandbox, and the thread of the session that asks, fresh from the log: whether that session
    holds the sandbox is the thread's to say."""
    thread_state = await lookup.session_thread(tenant, cmd.session_id)
    await lookup.models.refresh(lookup.store, thread_state)
    return lookup.models.sandbox(tenant, cmd.sandbox_id), replace(ctx, session_thread=thread_state)
