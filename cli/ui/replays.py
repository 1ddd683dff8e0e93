"""Replays for the timeline, kept cheap on long threads without a second way to compute them.

Every state comes from `projections.history` (`replay_at`, `sandbox_at`). Two things keep a
slider fast on a 100,000-event thread: a replay of a position the log had already reached is
final and kept (LRU); and while folding, a copy of the fold is kept every `CHECKPOINT_EVENTS`
events (and the last fold of each thread), so the next replay of that thread resumes from the
nearest copy at or before its position instead of reading the history from the start. A
thread's sandboxes are replayed from their own boundaries up to the same position, each resuming
from its last fold when that lies at or before it.
"""

from __future__ import annotations

import asyncio
import copy
from collections import OrderedDict

import msgspec

from agentledger.cli.query_client import QueryClient
from agentledger.projections.history import Replayer, SandboxReplayer, diff, replay_at, sandbox_at
from agentledger.schemas.errors import DomainError, EntityDetails, NotFound
from agentledger.schemas.queries import EventsPage, EventsRead, SandboxView
from agentledger.schemas.replay import Replay, ReplayDiff

CHECKPOINT_EVENTS = 5_000
KEEP_REPLAYS = 256
KEEP_CHECKPOINTS = 64  # per thread
KEEP_THREADS = 16  # threads whose folds are kept, the most recently replayed
KEEP_SANDBOXES = 256  # sandboxes whose last fold is kept


class SandboxAt(msgspec.Struct, frozen=True, kw_only=True):
    """A sandbox a session of the thread was bound to by `at`, as of `at`: None before it was requested."""

    sandbox_id: str
    sandbox: SandboxView | None


class SandboxesAt(msgspec.Struct, frozen=True, kw_only=True):
    at: int
    sandboxes: list[SandboxAt]


class Replays:
    def __init__(self, client: QueryClient) -> None:
        self.client = client
        self._done: OrderedDict[tuple[str, int], Replay] = OrderedDict()
        self._checkpoints: OrderedDict[str, list[Replayer]] = OrderedDict()
        self._tips: dict[str, Replayer] = {}  # each thread's most recent fold: following the live end resumes there
        self._sandboxes_done: OrderedDict[tuple[str, int], SandboxView | None] = OrderedDict()
        self._sandbox_tips: OrderedDict[str, SandboxReplayer] = OrderedDict()
        self._running: dict[tuple[str, int], asyncio.Task[Replay]] = {}  # the page asks for a position's state twice at once

    def _resume_from(self, thread_id: str, at: int) -> Replayer | None:
        best = None
        candidates = [*self._checkpoints.get(thread_id, []), *([self._tips[thread_id]] if thread_id in self._tips else [])]
        for r in candidates:
            if r.position <= at and (best is None or r.position > best.position):
                best = r
        return copy.deepcopy(best) if best is not None else None

    async def at(self, thread_id: str, at: int) -> Replay:
        """The thread as of position `at` (clamped to the log's end); one fold for requests that
        ask for the same position at the same time."""
        key = (thread_id, at)
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key]
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(self._replay(thread_id, at))
            self._running[key] = task
            task.add_done_callback(lambda t: (self._running.pop(key, None), t.cancelled() or t.exception()))
        return await asyncio.shield(task)

    async def _replay(self, thread_id: str, at: int) -> Replay:
        key = (thread_id, at)
        replayer = self._resume_from(thread_id, at) or Replayer(thread_id)
        kept = self._checkpoints.setdefault(thread_id, [])
        self._checkpoints.move_to_end(thread_id)
        while len(self._checkpoints) > KEEP_THREADS:
            gone, _ = self._checkpoints.popitem(last=False)
            self._tips.pop(gone, None)
        read = self.client.history(thread_id)
        last_kept = max((r.events for r in kept), default=0)

        async def pages(after: int, limit: int) -> EventsPage:
            # between pages the fold holds every event of the history up to its position (the log
            # is read in order and never gains an event below one it has), so a copy is a valid start
            nonlocal last_kept
            if replayer.events - last_kept >= CHECKPOINT_EVENTS:
                kept.append(copy.deepcopy(replayer))
                del kept[:-KEEP_CHECKPOINTS]
                last_kept = replayer.events
            return await read(after, limit)

        (view,) = await replay_at(pages, thread_id, [at], replayer)
        if view is None:
            raise DomainError(NotFound(message=f"thread {thread_id} has no events at or before position {at}",
                                       details=EntityDetails(kind="thread", id=thread_id)))
        self._tips[thread_id] = replayer
        view = msgspec.structs.replace(view, log_end=self.client.log_end)
        if at <= self.client.log_end:  # the log is past `at`: no event can still land at or below it
            self._done[key] = view
            while len(self._done) > KEEP_REPLAYS:
                self._done.popitem(last=False)
        return view

    async def diff(self, thread_id: str, a: int, b: int) -> ReplayDiff:
        low, high = sorted((a, b))
        return diff(await self.at(thread_id, low), await self.at(thread_id, high))

    async def sandboxes(self, thread_id: str, at: int) -> SandboxesAt:
        """Every sandbox the thread's sessions were bound to by `at`, each replayed up to `at`."""
        view = await self.at(thread_id, at)
        ids = list(dict.fromkeys(s.sandbox.sandbox_id for s in sorted(view.sessions, key=lambda s: s.created_position)
                                 if s.sandbox is not None))
        views = await asyncio.gather(*(self.sandbox(sandbox_id, at) for sandbox_id in ids))
        return SandboxesAt(at=at, sandboxes=[SandboxAt(sandbox_id=i, sandbox=v) for i, v in zip(ids, views, strict=True)])

    async def sandbox(self, sandbox_id: str, at: int) -> SandboxView | None:
        """The sandbox as of position `at`, from its own events (None: not yet requested then)."""
        key = (sandbox_id, at)
        if key in self._sandboxes_done:
            self._sandboxes_done.move_to_end(key)
            return self._sandboxes_done[key]
        tip = self._sandbox_tips.get(sandbox_id)
        replayer = copy.deepcopy(tip) if tip is not None and tip.position <= at else SandboxReplayer(sandbox_id)

        async def pages(after: int, limit: int) -> EventsPage:
            return await self.client.ask(EventsRead(sandbox_id=sandbox_id, after=after, limit=limit), EventsPage)

        try:
            (view,) = await sandbox_at(pages, sandbox_id, [at], replayer)
        except DomainError as e:
            if not isinstance(e.error, NotFound):
                raise
            view = None  # no event of it in the log yet
        self._sandbox_tips[sandbox_id] = replayer
        self._sandbox_tips.move_to_end(sandbox_id)
        while len(self._sandbox_tips) > KEEP_SANDBOXES:
            self._sandbox_tips.popitem(last=False)
        if at <= self.client.log_end:
            self._sandboxes_done[key] = view
            while len(self._sandboxes_done) > KEEP_REPLAYS:
                self._sandboxes_done.popitem(last=False)
        return view
