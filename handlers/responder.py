"""Request/reply on plain nats-py subscriptions: each subject pattern in a queue group (replicas
share the load), each request in its own task, and every request answered exactly once, whatever
the handler does. (Why plain subscriptions rather than a handler framework: docs/architecture.md,
"Requests on plain nats-py subscriptions".)

At most `max_workers` requests of a pattern are in progress at once, shared fairly among lanes
(tenants, from `lane_of`): see `handlers.fairness`. A request beyond its lane's share waits in
its lane's queue, not in the subscription, so another lane's request behind it is still taken;
one beyond the queue's bounds is answered at once by `refuse`. A handler may answer `Later`: the
request then gives its slot back while it waits (say, for the log to reach a position), and
takes a slot again, in turn, to finish.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agentledger.handlers.auth.identity import REQUEST_INFO
from agentledger.handlers.fairness import FairShare, Refused, Shares

log = logging.getLogger("agentledger.requests")


@dataclass(frozen=True)
class Later:
    """An answer that must wait for `until` (run holding no worker slot; its result is ignored,
    and it is cancelled when the responder stops), then comes from `then` (run in a slot)."""

    until: Callable[[], Awaitable[Any]]
    then: Callable[[], Awaitable[bytes]]


@dataclass(frozen=True)
class Refusal:
    """Why a request was not taken: its lane reached `limit` (`allowed`); `retry_after` seconds is
    an estimate of when a retry would be."""

    lane: str
    limit: str
    allowed: int
    retry_after: float


Answer = Callable[[Msg], Awaitable[bytes | Later]]
Refuse = Callable[[str, Refusal], bytes]
_ARRIVED: contextvars.ContextVar[float] = contextvars.ContextVar("arrived")


def arrived() -> float:
    """When the request being answered reached this responder (`time.monotonic()`): time spent
    waiting for a slot counts towards a request's deadline."""
    return _ARRIVED.get(time.monotonic())


@dataclass
class _Job:
    msg: Msg
    work: Callable[[], Awaitable[bytes | Later]]
    arrived: float

_HEADER_FRAME = len(b"NATS/1.0\r\n\r\n")


def header_bytes(headers: dict[str, str] | None) -> int:
    """The bytes of a request's headers as its sender wrote them: each `Name: value\r\n` line as
    nats-py kept it, and the `NATS/1.0` frame. The broker's own `Nats-Request-Info` is not the
    sender's and is left out, so a body's limit is not lowered by what the server adds."""
    lines = sum(len(name.encode()) + len(value.encode()) + 4 for name, value in (headers or {}).items()
                if name != REQUEST_INFO)
    return lines + _HEADER_FRAME if lines else 0


class Responder:
    def __init__(self, nc: Client, max_workers: int = 64, shares: Shares | None = None) -> None:
        self.nc = nc
        self.max_workers = max_workers
        self.shares = shares or Shares.of(max_workers)
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._parked: set[asyncio.Task[Any]] = set()
        self.refused = 0  # requests answered with a refusal because their lane was over its share

    async def serve(self, subject: str, queue: str, answer: Answer, failed: Callable[[str], bytes],
                    lane_of: Callable[[Msg], str] | None = None, refuse: Refuse | None = None,
                    shares: Shares | None = None) -> None:
        """Answer requests on `subject`. `answer` should not raise; if it does, the requester gets
        `failed(subject)`, called while the exception is handled (to log it and build an error
        reply), rather than waiting for a timeout. Without `lane_of` every request is in one lane;
        `shares` replaces the responder's own for this subject."""
        shares = shares or self.shares
        share: FairShare[_Job] = FairShare(shares)
        tasks = self._tasks
        pace = _Pace()

        def start(lane: str, job: _Job) -> None:
            task = asyncio.create_task(run(lane, job))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        def refusal(lane: str, refused: Refused) -> Refusal:
            waiting = share.waiting(lane) + share.held(lane)
            retry = 1.0 if refused.limit == "waits_parked" else pace.seconds * max(1, waiting) / shares.per_lane
            return Refusal(lane, refused.limit, refused.allowed, round(max(retry, 0.01), 3))

        async def reply(msg: Msg, data: bytes) -> None:
            if msg.reply:
                await self.nc.publish(msg.reply, data)

        async def run(lane: str, job: _Job) -> None:
            msg = job.msg
            _ARRIVED.set(job.arrived)
            started = time.monotonic()
            try:
                try:
                    data = await job.work()
                except Exception:
                    data = failed(msg.subject)
                if isinstance(data, Later):
                    refused = share.park(lane)
                    if refused is None:
                        self._park(lane, job, data, share, start)
                    else:
                        self.refused += 1
                        assert refuse is not None, "a handler that answers Later needs `refuse`"
                        await reply(msg, refuse(msg.subject, refusal(lane, refused)))
                else:
                    await reply(msg, data)
            except nats.errors.Error as e:  # the connection went away: the requester will retry
                log.warning("reply on %s not sent: %s: %s", msg.subject, type(e).__name__, e)
            finally:
                pace.took(time.monotonic() - started)
                for next_lane, next_job in share.release(lane):
                    start(next_lane, next_job)

        async def refuse_now(msg: Msg, refused: Refusal) -> None:
            try:
                assert refuse is not None
                await reply(msg, refuse(msg.subject, refused))
            except nats.errors.Error as e:
                log.warning("refusal on %s not sent: %s: %s", msg.subject, type(e).__name__, e)

        async def deliver(msg: Msg) -> None:
            lane = lane_of(msg) if lane_of is not None else ""
            job = _Job(msg, lambda: answer(msg), time.monotonic())
            admitted = share.admit(lane, job, len(msg.data), force=refuse is None)
            if admitted == "wait":
                return
            if isinstance(admitted, Refused):
                self.refused += 1
                task = asyncio.create_task(refuse_now(msg, refusal(lane, admitted)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                return
            start(lane, job)
            # Let the new task reach its append before the next request is taken: the client's
            # flusher then sends each append as it is made, and the log stores one while the
            # engine decides the next, instead of a burst of requests being decided first and
            # their appends reaching the log all at once (a convoy: the engine idles while the
            # log syncs the burst, then the log idles while the engine decides the next one).
            await asyncio.sleep(0)

        self._subs.append(await self.nc.subscribe(subject, queue=queue, cb=deliver))

    @property
    def parked(self) -> int:
        """Requests waiting outside any slot now."""
        return len(self._parked)

    def _park(self, lane: str, job: _Job, later: Later, share: FairShare[_Job],
              start: Callable[[str, _Job], None]) -> None:
        """Wait for `later.until` holding no slot, then queue `later.then` in the lane's turn."""

        async def wait() -> None:
            try:
                await later.until()
            except BaseException as e:  # cancelled by `stop`, or the wait failed: answer anyway
                if not isinstance(e, (Exception, asyncio.CancelledError)):
                    raise
            finally:
                share.unpark(lane)
                then = _Job(job.msg, later.then, job.arrived)
                if share.admit(lane, then, force=True) == "run":
                    start(lane, then)

        task = asyncio.create_task(wait())
        self._parked.add(task)
        self._tasks.add(task)
        task.add_done_callback(self._parked.discard)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop taking requests (unsubscribe: the server sends new ones to other replicas), then
        let the ones already taken finish and reply (parked ones stop waiting and answer now)."""
        subs, self._subs = self._subs, []
        for sub in subs:
            try:
                await sub.drain()
            except nats.errors.Error as e:  # the server went first
                log.warning("stop serving %s: %s", sub.subject, e)
        while self._tasks:
            for task in list(self._parked):
                task.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class _Pace:
    """A moving average of how long a request holds its slot (for `retry_after`)."""

    def __init__(self) -> None:
        self.seconds = 0.001

    def took(self, seconds: float) -> None:
        self.seconds += (seconds - self.seconds) / 64
