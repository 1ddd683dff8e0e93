"""A durable worker over part of the log, shared by every replica.

Process managers and effect handlers use it: the consumer is durable (a restart resumes after
the last acknowledged event) and filtered to the subjects the worker acts on. Without a `key`
it allows one unacknowledged event at a time, so events are handled in log order, once per
group, whichever replica fetches them. With a `key` (say, the sandbox an event belongs to) up to
`concurrency` events are in hand at once; events with the same key are handled one after
another in log order, events with different keys in parallel. A `window` larger than
`concurrency` reads that far ahead in the log (the messages held are kept from timing out), and
`group` (say, the tenant) shares the `concurrency` turns fairly among groups
(`handlers.fairness.Turns`): so one tenant's backlog does not hold back another tenant's event
that is within the window. With a `gate` (`handlers.lease.Lease`) only the replica holding it
fetches and handles: then keys keep their log order even across replicas. A replica that takes
the gate over while messages are still out with another (one that died holding them) waits
`ack_wait` first, so those come back to it before anything newer.

An event is acknowledged only after its handler finished; a crash before that redelivers it,
which the handlers make harmless with command ids derived from the event. A handler returns True
(done) or False (not now: the world is not ready, e.g. the engine is unreachable; retried with
backoff for as long as it takes). A handler that raises is retried with backoff and, after
`max_attempts`, parked: acknowledged, recorded in the parking lot, counted and logged, so the
rest flows on. Retries happen in hand (the message's ack timer is reset meanwhile), never by a
redelivery, so a retry never lets a later event of the same key overtake it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from agentledger.engine import admission
from agentledger.engine.store import RawEvent
from agentledger.engine.subjects import Subjects
from agentledger.handlers.fairness import Turns
from agentledger.handlers.lease import Lease
from agentledger.handlers.observability import tracing
from agentledger.handlers.parking import ParkingLot
from agentledger.schemas.common import ParkedMessage
from agentledger.schemas.events import Envelope

log = logging.getLogger("agentledger.workers")

Handler = Callable[[Envelope, int], Awaitable[bool]]
"""True when the event is done (ack); False to try again later; raising counts towards parking."""
OnPark = Callable[[Envelope, int, str], Awaitable[None]]


def backoff(attempt: int, base: float, cap: float) -> float:
    """Delay before retry number `attempt` (1, 2, ...): doubling from `base`, at most `cap` (pure)."""
    return min(base * 2 ** (attempt - 1), cap)


class DurableWorker:
    def __init__(self, js: JetStreamContext, stream: str, subject_filter: str | list[str], durable: str,
                 handler: Handler, subjects: Subjects, ack_wait: float = 30.0, retry_delay: float = 0.05,
                 max_retry_delay: float = 5.0, max_attempts: int = 8, quarantine: admission.Quarantine | None = None,
                 key: Callable[[str], str] | None = None, concurrency: int = 1, on_park: OnPark | None = None,
                 window: int | None = None, group: Callable[[str], str] | None = None, gate: Lease | None = None) -> None:
        self.js, self.stream, self.durable = js, stream, durable
        self.filters = [subject_filter] if isinstance(subject_filter, str) else list(subject_filter)
        self.subjects = subjects
        self.quarantine = admission.Quarantine(forward=quarantine)  # messages skipped because they failed admission
        self.handler, self.on_park = handler, on_park
        self.ack_wait, self.retry_delay, self.max_retry_delay = ack_wait, retry_delay, max_retry_delay
        self.max_attempts = max_attempts
        self.key = key or (lambda subject: "")
        self.concurrency = concurrency if key is not None else 1
        self.window = max(window or 0, self.concurrency) if key is not None else 1  # messages in hand at most
        self.group = group or (lambda subject: "")
        self._turns = Turns(self.concurrency, max(1, self.concurrency * 3 // 4) if group is not None else None)
        self._busy: set[str] = set()  # keys whose first message is being handled
        self._keeping: asyncio.Task[None] | None = None
        self.gate = gate
        self._took = 0  # the gate's `taken` count when this worker last took it over
        self._task: asyncio.Task[None] | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._stopping = False
        self._queues: dict[str, deque[Msg]] = {}
        self._lanes: set[asyncio.Task[None]] = set()
        self._in_hand = 0
        self._room = asyncio.Event()
        self._lot: ParkingLot | None = None
        self.handled = 0
        self.parked = 0  # messages given up on (also in the parking lot)
        self.retries = 0

    def config(self) -> ConsumerConfig:
        one = len(self.filters) == 1
        return ConsumerConfig(durable_name=self.durable, name=self.durable, ack_policy=AckPolicy.EXPLICIT,
                              max_ack_pending=self.window, deliver_policy=DeliverPolicy.ALL,
                              filter_subject=self.filters[0] if one else None,
                              filter_subjects=None if one else self.filters, ack_wait=self.ack_wait)

    async def start(self) -> None:
        self._lot = await ParkingLot.open(self.js, self.stream)
        try:  # create, or bring an existing consumer to this build's filters and concurrency
            await self.js.add_consumer(self.stream, self.config())
        except nats.js.errors.APIError as e:
            log.warning("%s: consumer not updated (%s); using it as it is", self.durable, e.description)
        self._sub = await self.js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        if self.gate is not None:
            await self.gate.start()
        self._task = asyncio.create_task(self._run(self._sub), name=f"worker-{self.durable}")
        if self.window > self.concurrency:
            self._keeping = asyncio.create_task(self._keep_held(), name=f"worker-{self.durable}-held")

    # -- fetching ---------------------------------------------------------------------------
    def _may_handle(self) -> bool:
        return not self._stopping and (self.gate is None or self.gate.held())

    async def _take_over(self) -> None:
        """Wait to hold the gate, with nothing of ours left in hand; then, if messages are still out
        with another replica, wait until they are due again, so they come back before newer ones."""
        assert self.gate is not None
        while self._in_hand:
            self._room.clear()
            await self._room.wait()
        await self.gate.wait_held()
        taken = self.gate.taken
        info = await self.js.consumer_info(self.stream, self.durable)
        if info.num_ack_pending:
            log.warning("%s: took over with %d events out elsewhere; waiting %.0f s for them", self.durable,
                        info.num_ack_pending, self.ack_wait)
            await asyncio.sleep(self.ack_wait)
        self._took = taken

    async def _run(self, sub: JetStreamContext.PullSubscription) -> None:
        while not self._stopping:
            if self.gate is not None and (not self.gate.held() or self.gate.taken != self._took):
                try:
                    await self._take_over()
                except (nats.errors.Error, nats.js.errors.Error) as e:
                    log.warning("%s: take over: %s: %s", self.durable, type(e).__name__, e)
                    await asyncio.sleep(1.0)
                continue
            while self._in_hand >= self.window:
                self._room.clear()
                await self._room.wait()
            try:
                msgs = await sub.fetch(min(self.window - self._in_hand, 256), timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                return
            except Exception:
                log.exception("%s: fetch failed", self.durable)
                await asyncio.sleep(self.max_retry_delay)
                continue
            for msg in msgs:
                self._take(msg)

    def _take(self, msg: Msg) -> None:
        key = self.key(msg.subject)
        queue = self._queues.get(key)
        self._in_hand += 1
        if queue is not None:  # a lane for this key is running: it takes the message in turn
            queue.append(msg)
            return
        self._queues[key] = deque([msg])
        lane = asyncio.create_task(self._lane(key), name=f"{self.durable}-{key}")
        self._lanes.add(lane)
        lane.add_done_callback(self._lanes.discard)

    async def _lane(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                async with self._turns.turn(self.group(queue[0].subject)):
                    if not self._may_handle():  # the gate went elsewhere: hand the rest back at once
                        await self._hand_back(queue)
                        break
                    self._busy.add(key)
                    try:
                        await self._handle(queue[0])
                    finally:
                        self._busy.discard(key)
                queue.popleft()
                self._in_hand -= 1
                self._room.set()
        finally:
            del self._queues[key]

    async def _hand_back(self, queue: deque[Msg]) -> None:
        """Let the server hand these out again now (to whichever replica asks)."""
        while queue:
            msg = queue.popleft()
            with contextlib.suppress(Exception):
                await msg.nak()
            self._in_hand -= 1
        self._room.set()

    async def _keep_held(self) -> None:
        """Messages read ahead wait for their turn: tell the server they are in hand, so none is
        handed out again while it waits (handling keeps its own message's timer)."""
        while not self._stopping:
            await asyncio.sleep(self.ack_wait / 3)
            if not self._may_handle():
                continue
            for key, queue in list(self._queues.items()):
                for msg in list(queue)[1 if key in self._busy else 0:]:
                    with contextlib.suppress(Exception):
                        await msg.in_progress()

    # -- handling -----------------------------------------------------------------------------
    async def _handle(self, msg: Msg) -> None:
        position = int(msg.metadata.sequence.stream)
        admitted = admission.admit(RawEvent(position, msg.subject, msg.data), self.subjects)
        if isinstance(admitted, admission.Quarantined):
            self.quarantine.add(admitted)
            await self._settle(msg.ack)
            return
        failures = max(int(msg.metadata.num_delivered or 1) - 1, 0)  # earlier deliveries that did not finish
        waits = 0
        while self._may_handle():
            error = None
            try:
                with tracing.delivering(msg.headers):  # the handler continues the event's trace
                    done = await self.handler(admitted, position)
                if done:
                    await self._settle(msg.ack)
                    self.handled += 1
                    return
                waits += 1
            except Exception as e:
                failures += 1
                error = f"{type(e).__name__}: {e}"
                log.warning("%s: event at %s failed (attempt %d of %d): %s", self.durable, position, failures,
                            self.max_attempts, error, exc_info=failures == 1)
            if error is not None and failures >= self.max_attempts:
                await self._park(msg, admitted, position, error, failures)
                return
            self.retries += 1
            with contextlib.suppress(Exception):
                await msg.in_progress()  # keep it in hand while we wait
            await asyncio.sleep(backoff(max(failures, waits), self.retry_delay, self.max_retry_delay))

    async def _park(self, msg: Msg, envelope: Envelope, position: int, error: str, attempts: int) -> None:
        record = ParkedMessage(worker=self.durable, position=position, subject=msg.subject, error=error[:2000],
                               attempts=attempts, at=datetime.now(UTC).isoformat())
        log.error("%s: parked the event at %s (%s) after %d attempts: %s", self.durable, position, msg.subject,
                  attempts, error)
        if self.on_park is not None:
            try:
                await self.on_park(envelope, position, error)
            except Exception as e:
                log.warning("%s: on_park for %s failed: %s", self.durable, position, e)
        assert self._lot is not None
        while not self._stopping:
            try:
                await self._lot.park(record)
                break
            except Exception as e:  # the record must land before the message is let go
                log.warning("%s: cannot record parked event %s yet: %s", self.durable, position, e)
                await asyncio.sleep(self.max_retry_delay)
        else:
            return
        self.parked += 1
        await self._settle(msg.term)

    async def _settle(self, settle: Callable[[], Awaitable[None]]) -> None:
        """Ack (or term); a connection lost meanwhile means a redelivery, which handlers tolerate."""
        try:
            await settle()
        except nats.errors.Error as e:
            log.warning("%s: could not acknowledge: %s", self.durable, e)

    async def stop(self) -> None:
        """Stop between events: an event being handled is left unacknowledged and comes back.

        The flag matters: a pull fetch can turn a cancellation into its own timeout error, which
        the loop treats as "nothing yet", so cancelling alone may not end it."""
        self._stopping = True
        taken = deque(msg for queue in self._queues.values() for msg in queue)
        tasks = [t for t in (self._task, self._keeping, *self._lanes) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._hand_back(taken)  # not finished here: another replica may take them now (acked ones stay acked)
        if self.gate is not None:
            await self.gate.stop()
        self._task = self._keeping = None
        self._lanes.clear()
        self._queues.clear()
        self._in_hand = 0
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
            self._sub = None
