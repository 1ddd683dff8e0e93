"""The command path: decode, find the boundary, decide, append with the expected position, reply.

Every request gets exactly one reply. A rejection or a no-op is never answered from a model
that might be stale: the boundary is re-read from the log first, and only a decision made on
the log's latest state is returned. An acceptance needs no such read, because the append
itself is refused by the log when the model was stale.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
import weakref
from datetime import UTC, datetime
from typing import Any

import msgspec

from agentledger.engine import codec
from agentledger.engine.boundary_model import BoundaryModel, CommandRecord
from agentledger.engine.commands import SPECS, Awaits, CommandSpec
from agentledger.engine.context import Context
from agentledger.engine.decoding import decode_request, decoders
from agentledger.engine.ids import Minter
from agentledger.engine.outcomes import Unchanged, already_exists, log_unavailable, unexpected
from agentledger.engine.repository import Repository, introduced_sessions
from agentledger.engine.store import ConcurrencyConflict, EventStore, LogUnavailable
from agentledger.engine.subjects import Subjects
from agentledger.engine.targets import Lookup
from agentledger.engine.thread_model import ThreadState
from agentledger.schemas.commands import COMMANDS, Command
from agentledger.schemas.errors import Conflict, ConflictDetails, DomainError, Unavailable
from agentledger.schemas.events import Envelope, Principal, ThreadCreated
from agentledger.schemas.replies import CommandReply
from agentledger.schemas.sandboxes import ProviderCapabilities

log = logging.getLogger("agentledger.commands")

_DECODERS = decoders(COMMANDS)
ENGINE = Principal(id="engine", role="engine")  # commands the engine's own workers send


class CommandService:
    def __init__(self, store: EventStore, models: Repository, subjects: Subjects,
                 catalog: dict[str, ProviderCapabilities], max_attempts: int = 10,
                 decide_within: float = 2.0, outcome_within: float = 3.0, outcome_waiters: int = 16) -> None:
        self.catalog = catalog  # the sandbox providers this deployment has, and what they can do
        self.store = store
        self.models = models
        self.lookup = Lookup(store, models)
        self.subjects = subjects
        self.max_attempts = max_attempts
        # A request is decided within this many seconds of its arrival or not at all (`unavailable`),
        # so a requester that retries a command id after that long never sees its first attempt
        # decided later, on newer state, after the retry was answered (a refusal or a no-op leaves
        # nothing in the log for the first attempt to find).
        self.decide_within = decide_within
        # A reply that waits for its request's outcome (`CommandSpec.awaits`: an exec) waits until this
        # many seconds after the request arrived, and at most `outcome_waiters` replies wait at once
        # (the others answer at once), so waiting never holds many of the request workers.
        self.outcome_within = outcome_within
        self.outcome_waiters = outcome_waiters
        self._waiting = 0
        self.conflicts = 0  # appends the log refused as stale: a health signal, and proof races happen
        self._locks: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()

    async def execute(self, tenant: str, name: str, body: bytes, principal: Principal = ENGINE,
                      arrived: float | None = None) -> CommandReply:
        """`principal` is who the broker says sent it; the engine's own workers send as `ENGINE`.
        `arrived` (`time.monotonic()`): when the request reached the engine, if it waited for a worker."""
        command_id: str | None = None
        arrived = time.monotonic() if arrived is None else arrived
        deadline = arrived + self.decide_within
        try:
            cmd: Command = decode_request(_DECODERS, "command", name, body)
            spec = SPECS[type(cmd)]
            command_id = cmd.command_id
            mint = Minter(tenant, command_id)
            cmd = spec.with_id(cmd, mint)
            command_id = command_id or mint("cmd_")
            model, ctx = await spec.find(self.lookup, tenant, cmd, Context(mint=mint, catalog=self.catalog))
            model = await self.models.loaded(self.store, model)
            reply = await self._run(tenant, spec, cmd, command_id, model, ctx, principal, deadline)
            if spec.awaits is not None and reply.ok and reply.events and reply.position is not None:
                reply = await self._with_outcome(spec.awaits, model, reply, arrived + self.outcome_within)
            return reply
        except DomainError as e:
            return CommandReply(ok=False, command_id=command_id, error=e.error)
        except LogUnavailable as e:
            return CommandReply(ok=False, command_id=command_id, error=log_unavailable(e))
        except Exception:
            return CommandReply(ok=False, command_id=command_id, error=unexpected(log, name))

    # -- decide and append -----------------------------------------------------------------
    def boundary_lock(self, boundary: str) -> Any:
        """The lock this engine holds while it decides and appends on `boundary` (one decision at a time)."""
        lock = self._locks.get(boundary)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[boundary] = lock
        return lock

    async def _run(self, tenant: str, spec: CommandSpec[Any, Any], cmd: Command, command_id: str, model: BoundaryModel,
                   ctx: Context, principal: Principal, deadline: float) -> CommandReply:
        async with self.boundary_lock(model.boundary):
            for attempt in range(self.max_attempts):
                record = model.commands.get(command_id)
                if record is not None:
                    return await self._repeat(record, spec, cmd, command_id)
                if time.monotonic() > deadline:
                    raise DomainError(Unavailable(message=f"not decided within {self.decide_within:g} s of arrival "
                                                          "(the log or this boundary is slow); retry with the same "
                                                          "command_id"))
                decided_at = model.position
                try:
                    outcome = spec.decide(model, cmd, ctx)
                except DomainError:
                    if await self._moved_since(model, decided_at):
                        continue
                    raise
                if isinstance(outcome, Unchanged):
                    if await self._moved_since(model, decided_at):
                        continue
                    return CommandReply(ok=True, command_id=command_id, position=model.position, events=[],
                                        result=outcome.result)
                envelope = self._envelope(tenant, model.boundary, cmd, command_id, outcome.event, principal)
                expected = model.position  # the decision's position: the follower may move the model meanwhile
                try:
                    position = await self._append(tenant, model, envelope, expected)
                except LogUnavailable:
                    return await self._unknown_outcome(model, spec, cmd, command_id)
                except ConcurrencyConflict as e:
                    self.conflicts += 1
                    if await self._followed_past(model, expected, e):
                        continue
                    # Another writer moved the boundary: re-read it and decide again. On a clustered
                    # stream a check can also fail while a racing write is still being replicated
                    # (10164): then nothing new is visible yet, and retrying at once would fail the same way.
                    if not await self._moved_since(model, model.position):
                        await asyncio.sleep(random.uniform(0.5, 1.0) * min(0.002 * 2**attempt, 0.1))
                    continue
                self.models.applied(model, envelope, position)
                return CommandReply(ok=True, command_id=command_id, position=position,
                                    events=[codec.stored(envelope, position)], result=spec.result(outcome.event))
        raise DomainError(Conflict(message=f"gave up after {self.max_attempts} conflicting attempts; retry",
                                   details=ConflictDetails(boundary=model.boundary)))

    async def _append(self, tenant: str, model: BoundaryModel, envelope: Envelope, expected: int) -> int:
        """One event, conditional on the boundary's position. An event that introduces sessions is
        preceded by a claim of each new session id for this thread (`_claim`), so one id can never
        land in two threads."""
        data = codec.encode(envelope)
        if isinstance(envelope.data, ThreadCreated):
            subject = self.subjects.thread_created_subject(model.boundary, envelope.data.project_id)
        else:
            subject = self.subjects.event_subject(model.boundary, envelope.type)
        if isinstance(model, ThreadState):
            for sid in introduced_sessions(envelope.data):
                await self._claim(tenant, sid, model.thread_id)
        return await self.store.append(subject, model.boundary, data, expected=expected)

    async def _claim(self, tenant: str, session_id: str, thread_id: str) -> None:
        """Claim `session_id` for `thread_id`: the first message on the id's claim filter, appended
        with expected sequence 0 on that filter (on a clustered stream too: the filter string is
        the same for every writer). A claim for this thread (an earlier attempt) is kept; a claim
        for another thread is `already_exists`. A claim whose event never lands (the decision
        changed after a conflict, or the engine died between the two) keeps the id reserved for
        its thread, where a retry uses it."""
        if self.models.locate_session(tenant, session_id) == thread_id:
            return
        claim_filter = self.subjects.session_claim_filter(tenant, session_id)
        try:
            await self.store.append(self.subjects.session_claim_subject(tenant, session_id, thread_id), claim_filter,
                                    b"", expected=0)
        except ConcurrencyConflict:
            found = await self.models.resolve_session(self.store, tenant, session_id)
            if found is None:
                raise  # a racing claim not yet visible (clustered stream): back off and decide again
            if found != thread_id:
                raise already_exists("session", session_id) from None

    async def _unknown_outcome(self, model: BoundaryModel, spec: CommandSpec[Any, Any], cmd: Command,
                               command_id: str) -> CommandReply:
        """The append got no answer (a lost ack, a node gone, an election): it may have landed. The
        boundary is re-read, and a landed append is answered as a repeat; otherwise `unavailable`,
        and the requester's retry with the same command id is answered by the usual repeat check.

        Never decide again here. Seconds may have passed: the requester may have given up and had
        this command id answered by another replica meanwhile (a refusal or a no-op, which leave no
        trace in the log), and a new decision on newer state would give one command id two
        outcomes (the kill-a-cluster-node fault test found this: a no-op answer, then the same
        command's event from an attempt that had kept retrying)."""
        await self.models.refresh(self.store, model)
        record = model.commands.get(command_id)
        if record is not None:
            return await self._repeat(record, spec, cmd, command_id)
        raise LogUnavailable("the log did not confirm the append; retry with the same command_id")

    async def _followed_past(self, model: BoundaryModel, expected: int, e: Exception) -> bool:
        """A plain append refused because the boundary is at `e.last`: usually another replica's write
        that our live follower is about to apply. Waiting briefly for it saves the re-read (and a
        decision made then is still checked by the next append)."""
        if not isinstance(e, ConcurrencyConflict) or e.last is None or e.last <= expected:
            return False
        await self.models.wait_for(e.last, 0.05)
        return model.position >= e.last

    async def _repeat(self, record: CommandRecord, spec: CommandSpec[Any, Any], cmd: Command,
                      command_id: str) -> CommandReply:
        """A command id this boundary already applied answers its first outcome, read back from the log."""
        if record.command != cmd.NAME:
            raise already_exists("command", command_id)
        raw = await self.store.get(record.position)
        if raw is None:
            raise LogUnavailable(f"event at {record.position} could not be read")
        envelope = codec.decode(raw.data)
        return CommandReply(ok=True, command_id=command_id, position=record.position,
                            events=[codec.stored(envelope, record.position)], result=spec.result(envelope.data))

    async def _with_outcome(self, awaits: Awaits, model: BoundaryModel, reply: CommandReply,
                            until: float) -> CommandReply:
        """The reply of a request (or a repeat of it) with its outcome, if that is in the log by
        `until` (monotonic): waited for as the follower applies events, outside the boundary's lock,
        so the outcome can be recorded meanwhile. Otherwise the request's own reply (`running`)."""
        request = reply.position
        assert request is not None
        found = awaits.outcome_at(model, request)
        try:
            if found is None and self._waiting < self.outcome_waiters:
                self._waiting += 1
                try:
                    found = await self.models.wait_until(lambda: awaits.outcome_at(model, request),
                                                         until - time.monotonic())
                finally:
                    self._waiting -= 1
                if found is None:  # evicted from the cache meanwhile, or the follower is behind: ask the log
                    await self.models.refresh(self.store, model)
                    found = awaits.outcome_at(model, request)
            raw = None if found is None else await self.store.get(found)
        except LogUnavailable:
            return reply  # the request is recorded either way: its outcome can be read later
        if raw is None:
            return reply
        try:  # the position came from the model, which applied only what admission let in
            outcome = codec.decode(raw.data).data
        except (msgspec.DecodeError, ValueError):
            return reply
        return msgspec.structs.replace(reply, result=awaits.result(reply.result, outcome, found))

    async def _moved_since(self, model: BoundaryModel, decided_at: int) -> bool:
        """Re-read the boundary from the log; True when the decision was made on a stale model.
        (The live follower may have applied the newer events while we waited, so compare positions.)"""
        await self.models.refresh(self.store, model)
        return model.position != decided_at

    @staticmethod
    def _envelope(tenant: str, boundary: str, cmd: Command, command_id: str, event: Any,
                  principal: Principal) -> Envelope:
        return Envelope(event_id=uuid.uuid4().hex, type=type(event).__struct_config__.tag, tenant_id=tenant,
                        boundary=boundary, command=cmd.NAME, command_id=command_id,
                        correlation_id=cmd.correlation_id or command_id, causation_id=cmd.causation_id,
                        actor=cmd.actor, principal=principal, at=datetime.now(UTC).isoformat(), data=event)


