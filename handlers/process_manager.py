"""The sandbox process manager: thread events that bind or shut down sandboxes become
commands to the sandbox boundary. Command ids derive from the triggering event, so a
redelivery after a crash repeats nothing. One event's commands each name a different sandbox,
so they are sent together (at most `FAN_OUT` at a time): an archive that releases thousands of
sandboxes holds the process manager, and every tenant's events behind it, that much less."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import msgspec

from agentledger.engine.subjects import Subjects
from agentledger.schemas.commands import Command, SandboxCreate, SandboxDestroy, SandboxFork, SandboxPause, SandboxResume
from agentledger.schemas.common import Actor
from agentledger.schemas.events import (
    Envelope,
    SessionCancelled,
    SessionCompleted,
    SessionCreated,
    SessionFailed,
    SessionSpawned,
    SessionStarted,
    ThreadArchived,
)
from agentledger.schemas.replies import CommandReply

log = logging.getLogger("agentledger.process_manager")
PM_ACTOR = Actor(kind="system", id="sys_process_manager")
RETRYABLE = frozenset({"conflict", "unavailable"})
FAN_OUT = 16
ACTS_ON = ("session.created", "session.spawned", "session.started", "session.completed", "session.cancelled",
           "session.failed", "thread.archived")
"""The thread event types `commands_for` can turn into commands: the only ones the worker fetches."""

Send = Callable[[str, str, bytes], Awaitable[CommandReply]]


def commands_for(envelope: Envelope) -> list[Command]:
    """What the sandbox boundary must be told because of this thread event (pure)."""
    data = envelope.data
    ids = {"actor": PM_ACTOR, "correlation_id": envelope.correlation_id, "causation_id": envelope.event_id}
    out: list[Command] = []
    if isinstance(data, (SessionCreated, SessionSpawned)) and data.sandbox is not None:
        b, thread_id = data.sandbox, Subjects.parse_boundary(envelope.boundary).entity
        owner = {"owner_session_id": data.session_id, "thread_id": thread_id}
        if b.mode == "new":
            out.append(SandboxCreate(sandbox_id=b.sandbox_id, provider=b.provider, options=b.options, **owner, **ids))
        elif b.mode == "fork":
            assert b.source_sandbox_id is not None
            out.append(SandboxFork(sandbox_id=b.source_sandbox_id, new_sandbox_id=b.sandbox_id, **owner, **ids))
        elif b.mode == "continue":
            out.append(SandboxResume(sandbox_id=b.sandbox_id, **owner, **ids))
    if isinstance(data, (SessionStarted, SessionCompleted, SessionCancelled, SessionFailed, ThreadArchived)):
        for action in data.sandbox_actions:
            reason = f"{action.reason} ({action.session_id})"
            if action.action == "destroy":
                out.append(SandboxDestroy(sandbox_id=action.sandbox_id, reason=reason, **ids))
            elif action.action == "pause":
                out.append(SandboxPause(sandbox_id=action.sandbox_id, reason=reason, **ids))
            else:
                out.append(SandboxResume(sandbox_id=action.sandbox_id, **ids))
    return [msgspec.structs.replace(c, command_id=f"pm-{envelope.event_id}-{i}") for i, c in enumerate(out)]


class SandboxProcessManager:
    def __init__(self, send: Send) -> None:
        self.send = send

    async def handle(self, envelope: Envelope, position: int) -> bool:
        slots = asyncio.Semaphore(FAN_OUT)

        async def send(command: Command) -> CommandReply:
            async with slots:
                return await self.send(envelope.tenant_id, command.NAME, msgspec.json.encode(command))

        commands = commands_for(envelope)
        replies = await asyncio.gather(*(send(c) for c in commands))
        done = True
        for command, reply in zip(commands, replies, strict=True):
            if reply.error is not None:
                code = type(reply.error).__struct_config__.tag
                if code in RETRYABLE:  # the whole event again later: the accepted ones answer as repeats
                    done = False
                elif code == "internal":  # the engine failed on it: retried with backoff, then parked
                    raise RuntimeError(f"{command.NAME} for event at {position}: {reply.error.message}")
                else:  # a definitive refusal (say, a sandbox destroyed by hand meanwhile) is logged, not retried
                    log.warning("event %s at %s: %s refused: %s", envelope.type, position, command.NAME,
                                reply.error.message)
        return done
