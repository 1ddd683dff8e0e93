"""Fair shares of a fixed number of worker slots among lanes (tenants), without I/O.

A request runs at once when a slot is free, its lane holds fewer than `per_lane` of them and
none of its lane's requests is waiting; otherwise it waits in its lane's queue, and a slot that
frees up goes to the waiting lane that holds the fewest slots (among lanes with room in their
share; the one waiting longest among equals). So one lane never holds more than its share, a
lane that arrives behind a burst of another is served at the next free slot, and within a lane
requests keep their order. A lane whose queue is full (in requests or bytes) is refused at once instead; so
is a lane with too many requests parked outside any slot (waiting for the log to reach a
position: `park`/`unpark`). Nothing in `FairShare` waits or answers: `handlers.responder` does;
`Turns` is the same sharing for tasks that wait for their turn (the durable workers' lanes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Shares:
    """How a responder's `slots` are shared. The defaults suit `slots` = 64."""

    slots: int = 64  # requests in progress at once, all lanes together
    per_lane: int = 48  # of which one lane may hold at most this many
    queued: int = 1_000  # requests one lane may have waiting for a slot
    queued_bytes: int = 16 * 1024 * 1024  # and their bodies' bytes
    parked: int = 256  # requests one lane may have parked outside any slot

    def __post_init__(self) -> None:
        if not 1 <= self.per_lane <= self.slots:
            raise ValueError(f"per_lane must be between 1 and slots ({self.slots}), not {self.per_lane}")

    @classmethod
    def of(cls, slots: int, per_lane: int | None = None) -> Shares:
        """`slots` shared with a lane taking at most `per_lane` (default: three quarters of them)."""
        return cls(slots=slots, per_lane=per_lane or max(1, slots * 3 // 4))


@dataclass(frozen=True)
class Refused:
    limit: Literal["requests_waiting", "bytes_waiting", "waits_parked"]
    allowed: int


class _Lane(Generic[T]):
    __slots__ = ("parked", "running", "waiting", "waiting_bytes")

    def __init__(self) -> None:
        self.running = 0
        self.waiting: deque[tuple[T, int]] = deque()
        self.waiting_bytes = 0
        self.parked = 0

    @property
    def idle(self) -> bool:
        return not (self.running or self.waiting or self.parked)


class FairShare(Generic[T]):
    def __init__(self, shares: Shares) -> None:
        self.shares = shares
        self.running = 0
        self._lanes: dict[str, _Lane[T]] = {}
        self._turns: OrderedDict[str, None] = OrderedDict()  # lanes with requests waiting, next turn first

    def _lane(self, name: str) -> _Lane[T]:
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = _Lane()
        return lane

    def _forget(self, name: str, lane: _Lane[T]) -> None:
        if lane.idle:
            del self._lanes[name]

    def admit(self, name: str, item: T, size: int = 0, force: bool = False) -> Literal["run", "wait"] | Refused:
        """Whether `item` runs now (its slot is taken: `release` it), waits for a slot (it comes
        back from a later `release`), or is refused. `force` admits past the queue's bounds (a
        request that was already admitted once, back from being parked)."""
        lane = self._lane(name)
        if not lane.waiting and lane.running < self.shares.per_lane and self.running < self.shares.slots:
            lane.running += 1
            self.running += 1
            return "run"
        if not force:
            refused = None
            if len(lane.waiting) >= self.shares.queued:
                refused = Refused("requests_waiting", self.shares.queued)
            elif lane.waiting_bytes + size > self.shares.queued_bytes:
                refused = Refused("bytes_waiting", self.shares.queued_bytes)
            if refused is not None:
                self._forget(name, lane)
                return refused
        lane.waiting.append((item, size))
        lane.waiting_bytes += size
        self._turns[name] = None
        return "wait"

    def release(self, name: str) -> list[tuple[str, T]]:
        """A request of lane `name` finished: the waiting requests that take the free slots now
        (each is running from here on)."""
        lane = self._lanes[name]
        lane.running -= 1
        self.running -= 1
        started = self._next()
        self._forget(name, lane)
        return started

    def _next(self) -> list[tuple[str, T]]:
        """Give free slots to waiting lanes: each time to the lane holding the fewest slots among
        those with room in their share (the longest waiting first among equals)."""
        started: list[tuple[str, T]] = []
        while self.running < self.shares.slots and self._turns:
            best: str | None = None
            for name in self._turns:
                held = self._lanes[name].running
                if held < self.shares.per_lane and (best is None or held < self._lanes[best].running):
                    best = name
                    if held == 0:
                        break
            if best is None:
                break
            lane = self._lanes[best]
            item, size = lane.waiting.popleft()
            lane.waiting_bytes -= size
            del self._turns[best]
            if lane.waiting:
                self._turns[best] = None  # its next turn comes after the others'
            lane.running += 1
            self.running += 1
            started.append((best, item))
        return started

    def park(self, name: str) -> Refused | None:
        """Take one of the lane's parking places (None), or the refusal when all are taken."""
        lane = self._lane(name)
        if lane.parked >= self.shares.parked:
            self._forget(name, lane)
            return Refused("waits_parked", self.shares.parked)
        lane.parked += 1
        return None

    def unpark(self, name: str) -> None:
        lane = self._lanes[name]
        lane.parked -= 1
        self._forget(name, lane)

    def waiting(self, name: str) -> int:
        lane = self._lanes.get(name)
        return 0 if lane is None else len(lane.waiting)

    def held(self, name: str) -> int:
        """Slots the lane holds now."""
        lane = self._lanes.get(name)
        return 0 if lane is None else lane.running


class Turns:
    """`slots` turns at once shared among groups as `FairShare` shares them (a group holds at most
    `per_group`; a freed turn goes to the waiting group holding the fewest): for workers, whose
    lanes wait for a turn instead of being refused."""

    def __init__(self, slots: int, per_group: int | None = None) -> None:
        self._share: FairShare[asyncio.Future[None]] = FairShare(
            Shares(slots=slots, per_lane=per_group or slots, queued=2**62, queued_bytes=2**62))

    async def acquire(self, group: str) -> None:
        future = asyncio.get_running_loop().create_future()
        if self._share.admit(group, future, force=True) == "run":
            return
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # the turn came as we were cancelled: give it back
                self.release(group)
            raise

    def release(self, group: str) -> None:
        for name, future in self._share.release(group):
            if future.cancelled():  # its waiter is gone: pass the turn on
                self.release(name)
            else:
                future.set_result(None)

    @contextlib.asynccontextmanager
    async def turn(self, group: str) -> AsyncIterator[None]:
        await self.acquire(group)
        try:
            yield
        finally:
            self.release(group)
