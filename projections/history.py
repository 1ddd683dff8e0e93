"""A thread's history as its readers see it: for a fork, the source's history up to the fork
point (recursively), then the fork's own events. Nothing is copied; positions stay the log's."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import msgspec

from agentledger.engine import admission
from agentledger.engine.repository import Repository
from agentledger.engine.sandbox_model import SandboxState
from agentledger.engine.store import EventStore, RawEvent
from agentledger.engine.thread_model import ThreadState
from agentledger.projections.views import replay_view, sandbox_view
from agentledger.schemas.events import (
    Envelope,
    SandboxExecFailed,
    SandboxExecFinished,
    SandboxExecRequested,
    StoredEvent,
    ThreadCreated,
)
from agentledger.schemas.queries import EventsPage, SandboxView
from agentledger.schemas.replay import ExecView, FieldChange, Replay, ReplayDiff, Scalar, SessionChange


def sandbox_bindings(thread: ThreadState) -> dict[str, int]:
    """Each sandbox a session of the thread was bound to, with the position of its first binding
    (the event that created the session). A binding precedes every request it causes, so the
    thread's part of a sandbox's history starts there."""
    out: dict[str, int] = {}
    for session in thread.sessions.values():
        if session.sandbox is not None:
            sandbox_id = session.sandbox.sandbox_id
            out[sandbox_id] = min(out.get(sandbox_id, session.created_position), session.created_position)
    return out


async def read_history(store: EventStore, models: Repository, thread: ThreadState, after: int = 0,
                       limit: int | None = None, up_to: int | None = None, sandboxes: bool = False) -> list[RawEvent]:
    """Events of `thread`'s lineage with position in (after, up_to], oldest first, at most `limit`;
    with `sandboxes`, merged with the events of its sandboxes from their binding on.

    Positions are increasing along a lineage (a source's events before the fork point precede the
    fork's creation), so `after` pages through the whole history like through one boundary. What
    lies below a position never changes later: a sandbox joins the history only after its binding.
    """
    out: list[RawEvent] = []
    fork = thread.forked_from
    if fork is not None and after < fork.position:
        source = await models.loaded(store, models.thread(thread.tenant_id, fork.thread_id))
        cap = fork.position if up_to is None else min(up_to, fork.position)
        out = await read_history(store, models, source, after=after, limit=limit, up_to=cap, sandboxes=sandboxes)
        if limit is not None and len(out) >= limit:
            return out[:limit]
    remaining = None if limit is None else limit - len(out)
    start = max(after, out[-1].position if out else after)
    reads = [store.read(thread.boundary, after=start, limit=remaining, up_to=up_to)]
    if sandboxes:
        reads += [store.read(models.subjects.sandbox_filter(thread.tenant_id, sandbox_id), after=max(start, bound),
                             limit=remaining, up_to=up_to)
                  for sandbox_id, bound in sandbox_bindings(thread).items() if up_to is None or bound < up_to]
    own = list(heapq.merge(*await asyncio.gather(*reads), key=lambda raw: raw.position))
    return out + (own if remaining is None else own[:remaining])


# -- replay: a thread as it was at a position ----------------------------------------------------
# The one way a past state is computed, used by `agentledger replay` and the web timeline alike:
# the thread's history in position order (as `events.read` pages it), applied to the same
# ThreadState the engine decides on.

PageReader = Callable[[int, int], Awaitable[EventsPage]]
"""`(after, limit)` -> the next page of a history (an `events.read` with `thread_id`, or `sandbox_id`)."""

REPLAY_PAGE = 1000


class Replayer:
    """Folds a thread's history into its ThreadState. A fork's history starts with its source's
    events up to the fork point; those are counted but not applied (a fork starts with no
    sessions of its own), and the fork's own boundary is the one its `thread.created` names."""

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        self.state: ThreadState | None = None
        self.events = 0  # history events consumed, lineage included
        self.position = 0  # position of the last one
        self.skipped = admission.Quarantine(quiet=True)  # events the engine would not apply either

    def feed(self, envelope: Envelope, position: int) -> None:
        data = envelope.data
        if self.state is None and isinstance(data, ThreadCreated) and data.thread_id == self.thread_id:
            self.state = ThreadState(envelope.tenant_id, envelope.boundary, self.thread_id)
        if self.state is not None and envelope.boundary == self.state.boundary:
            admission.enter(self.state, envelope, position, self.skipped, envelope.boundary)  # as the engine does
            self.state.commands.pop(envelope.command_id, None)  # idempotency records: nothing decides on a replay
        self.events += 1
        self.position = position

    def view(self, at: int | None) -> Replay | None:
        return None if self.state is None else replay_view(self.state, at, self.events)


class SandboxReplayer:
    """Folds one sandbox's events (an `events.read` with `sandbox_id`) into the engine's own
    SandboxState, as the engine applies them."""

    def __init__(self, sandbox_id: str) -> None:
        self.sandbox_id = sandbox_id
        self.state: SandboxState | None = None
        self.events = 0
        self.position = 0
        self.skipped = admission.Quarantine(quiet=True)

    def feed(self, envelope: Envelope, position: int) -> None:
        if self.state is None:
            self.state = SandboxState(envelope.tenant_id, envelope.boundary, self.sandbox_id)
        if envelope.boundary == self.state.boundary:
            admission.enter(self.state, envelope, position, self.skipped, envelope.boundary)
            self.state.commands.pop(envelope.command_id, None)
        self.events += 1
        self.position = position

    def view(self, at: int | None) -> SandboxView | None:
        return sandbox_view(self.state) if self.state is not None and self.state.exists else None


V = TypeVar("V", covariant=True)


class Fold(Protocol[V]):
    """What `fold_at` drives: a replayer of one history."""

    @property
    def position(self) -> int: ...

    def feed(self, envelope: Envelope, position: int) -> None: ...

    def view(self, at: int | None) -> V | None: ...


async def replay_at(read_page: PageReader, thread_id: str, stops: Sequence[int | None],
                    replayer: Replayer | None = None) -> list[Replay | None]:
    """The thread as of each position in `stops` (ascending; None means the latest), from one pass
    over its history, read a page at a time and never further than the last stop. None where the
    thread did not exist yet. `replayer` resumes from a state already folded (not past any stop)."""
    return await fold_at(read_page, replayer or Replayer(thread_id), stops)


async def sandbox_at(read_page: PageReader, sandbox_id: str, stops: Sequence[int | None],
                     replayer: SandboxReplayer | None = None) -> list[SandboxView | None]:
    """The sandbox as of each position in `stops`, the same way; None where it was not yet requested."""
    return await fold_at(read_page, replayer or SandboxReplayer(sandbox_id), stops)


async def fold_at(read_page: PageReader, r: Fold[V], stops: Sequence[int | None]) -> list[V | None]:
    """`r`'s view as of each stop, feeding it the history from its own position on."""
    out: list[V | None] = []
    pending = list(stops)
    after = r.position
    while pending:
        page = await read_page(after, REPLAY_PAGE)
        for event in page.events:
            while pending and pending[0] is not None and event.position > pending[0]:
                out.append(r.view(pending.pop(0)))
            if not pending:
                return out
            r.feed(event, event.position)
        if page.next_after <= after:  # the end of the history (a page can be empty yet move on: quarantine)
            out.extend(r.view(stop) for stop in pending)
            return out
        after = page.next_after
    return out


def bound_sandboxes(replay: Replay) -> list[str]:
    """The sandboxes a replayed thread's sessions were bound to, in the order they were first bound."""
    return list(dict.fromkeys(s.sandbox.sandbox_id for s in replay.sessions if s.sandbox is not None))


def exec_views(events: Sequence[StoredEvent], up_to: int | None = None) -> list[ExecView]:
    """The execs among one sandbox's events (its history, in position order) as of `up_to` (pure)."""
    execs: dict[int, ExecView] = {}
    for e in events:
        if up_to is not None and e.position > up_to:
            break
        match e.data:
            case SandboxExecRequested(sandbox_id=sandbox_id, session_id=session_id, argv=argv):
                execs[e.position] = ExecView(sandbox_id=sandbox_id, request_position=e.position, session_id=session_id,
                                             argv=argv, status="running")
            case SandboxExecFinished(request_position=at, outcome=outcome) if at in execs:
                execs[at] = msgspec.structs.replace(execs[at], status="finished", outcome_position=e.position,
                                                    outcome=outcome)
            case SandboxExecFailed(request_position=at, error=error) if at in execs:
                execs[at] = msgspec.structs.replace(execs[at], status="failed", outcome_position=e.position, error=error)
    return list(execs.values())


async def read_execs(read_page: PageReader, up_to: int | None) -> list[ExecView]:
    """The execs of one sandbox (`read_page`: an `events.read` with `sandbox_id`) as of `up_to`."""
    events: list[StoredEvent] = []
    after = 0
    while up_to is None or after < up_to:
        page = await read_page(after, REPLAY_PAGE)
        events += page.events
        if page.next_after <= after:
            break
        after = page.next_after
    return exec_views(events, up_to)


def _scalar(value: Any) -> Scalar:
    value = msgspec.to_builtins(value)
    return value if value is None or isinstance(value, str | int | bool) else msgspec.json.encode(value).decode()


def _changes(before: msgspec.Struct, after: msgspec.Struct, skip: tuple[str, ...]) -> list[FieldChange]:
    out = []
    for name in before.__struct_fields__:
        if name in skip:
            continue
        a, b = _scalar(getattr(before, name)), _scalar(getattr(after, name))
        if a != b:
            out.append(FieldChange(field=name, before=a, after=b))
    return out


def diff(before: Replay, after: Replay) -> ReplayDiff:
    """What changed between two replays of one thread, `before` taken at the earlier position."""
    old = {s.session_id: s for s in before.sessions}
    new = {s.session_id: s for s in after.sessions}
    changed = [SessionChange(session_id=sid, changes=c) for sid, s in new.items() if sid in old
               for c in [_changes(old[sid], s, ("position",))] if c]
    held_before, held_after = set(before.thread.held_sandboxes), set(after.thread.held_sandboxes)
    return ReplayDiff(
        thread_id=after.thread.thread_id,
        from_position=before.thread.position if before.at is None else before.at,
        to_position=after.thread.position if after.at is None else after.at,
        events_between=after.history_events - before.history_events,
        thread_changes=_changes(before.thread, after.thread, ("sessions", "held_sandboxes")),
        sessions_added=[s for sid, s in new.items() if sid not in old],
        sessions_removed=[sid for sid in old if sid not in new],
        session_changes=changed,
        sandboxes_acquired=[h for h in after.thread.held_sandboxes if h not in held_before],
        sandboxes_released=[h for h in before.thread.held_sandboxes if h not in held_after])
