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
redelivery, so a retry never lets a later event of the same key overtake it. Every message in
hand, being handled or waiting in its lane, has its ack timer reset every third of `ack_wait`,
however long that takes (an exec runs for minutes): JetStream delivers an event again only when
the worker that held it stopped (or lost its connection for longer than `ack_wait`), and
`delivery()` tells a handler which delivery it is handling.

The consumer itself may vanish (deleted by an operator, or by anyone who could): a fetch then
finds no one answering, and a check every `check_every` seconds finds it gone even when idle.
The worker then makes it again with its configuration, starting after the acknowledged floor it
last saw (not from the start of the log: the floor is lost with the consumer), and counts and
logs it; `missing` says so (readiness reports it) until the consumer is back. What lies between
that floor and where the old consumer had got to comes again, which command ids derived from the
events make harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
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
from agentledger.handlers.tasks import ended
from agentledger.schemas.common import ParkedMessage
from agentledger.schemas.events import Envelope

log = logging.getLogger("agentledger.workers")

Handler = Callable[[Envelope, int], Awaitable[bool]]
"""True when the event is done (ack); False to try again later; raising counts towards parking."""
OnPark = Callable[[Envelope, int, str], Awaitable[None]]
_delivery: ContextVar[int] = ContextVar("delivery", default=1)


def delivery() -> int:
    """Which delivery of its event the running handler is handling: 1 the first time; more when a
    worker that held the event earlier stopped before acknowledging it."""
    return _delivery.get()


def _position(msg: Msg) -> int:
    return int(msg.metadata.sequence.stream)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Delay before retry number `attempt` (1, 2, ...): doubling from `base`, at most `cap` (pure)."""
    return min(base * 2 ** (attempt - 1), cap)


class DurableWorker:
    def __init__(self, js: JetStreamContext, stream: str, subject_filter: str | list[str], durable: str,
                 handler: Handler, subjects: Subjects, ack_wait: float = 30.0, retry_delay: float = 0.05,
                 max_retry_delay: float = 5.0, max_attempts: int = 8, quarantine: admission.Quarantine | None = None,
                 key: Callable[[str], str] | None = None, concurrency: int = 1, on_park: OnPark | None = None,
                 window: int | None = None, group: Callable[[str], str] | None = None, gate: Lease | None = None,
                 check_every: float = 5.0) -> None:
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
        self.check_every = check_every  # seconds between checks that the consumer still exists
        self.missing: str | None = None  # why the consumer is not there, until it is made again
        self.recreated = 0
        self.floor = 0  # the consumer's acknowledged floor (stream position) as last seen
        self._watching: asyncio.Task[None] | None = None
        self._checking = asyncio.Lock()

    def config(self, start_after: int = 0) -> ConsumerConfig:
        """The consumer this worker reads: from the start of the log, or after `start_after`."""
        one = len(self.filters) == 1
        start = {"deliver_policy": DeliverPolicy.ALL} if not start_after else \
            {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": start_after + 1}
        return ConsumerConfig(durable_name=self.durable, name=self.durable, ack_policy=AckPolicy.EXPLICIT,
                              max_ack_pending=self.window, filter_subject=self.filters[0] if one else None,
                              filter_subjects=None if one else self.filters, ack_wait=self.ack_wait, **start)

    async def start(self) -> None:
        self._lot = await ParkingLot.open(self.js, self.stream)
        await self._ensure_consumer()
        self._sub = await self.js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        if self.gate is not None:
            await self.gate.start()
        self._task = asyncio.create_task(self._run(self._sub), name=f"worker-{self.durable}")
        self._keeping = asyncio.create_task(self._keep_in_hand(), name=f"keep-{self.durable}")
        self._watching = asyncio.create_task(self._watch(), name=f"watch-{self.durable}")

    # -- the consumer itself --------------------------------------------------------------------
    async def _ensure_consumer(self) -> None:
        """Create the consumer, or bring an existing one to this build's filters and concurrency (where
        it starts is kept: that cannot change, and one made again starts after a floor)."""
        start_after = 0
        try:
            info = await self.js.consumer_info(self.stream, self.durable)
            self.floor = int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
            if info.config.deliver_policy == DeliverPolicy.BY_START_SEQUENCE and info.config.opt_start_seq:
                start_after = info.config.opt_start_seq - 1
            if self._as_configured(info.config):
                return
        except nats.js.errors.NotFoundError:
            pass
        try:
            await self.js.add_consumer(self.stream, self.config(start_after))
        except (nats.js.errors.APIError, nats.errors.TimeoutError) as e:
            log.warning("%s: consumer not updated (%s); using it as it is", self.durable, e)

    def _as_configured(self, existing: ConsumerConfig) -> bool:
        """Does the consumer already read what this build would have it read, as it would?"""
        ours = self.config()
        return (existing.filter_subject, sorted(existing.filter_subjects or []), existing.max_ack_pending,
                existing.ack_wait, existing.ack_policy) == (ours.filter_subject, sorted(ours.filter_subjects or []),
                                                             ours.max_ack_pending, ours.ack_wait, ours.ack_policy)

    async def _watch(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.check_every)
            try:
                await self._check_consumer()
            except Exception:  # a check that fails in a way not foreseen must not end the watch
                log.exception("%s: consumer check failed", self.durable)

    async def _check_consumer(self) -> None:
        """Is the consumer still there? Note its floor if so; make it again if it is gone."""
        async with self._checking:  # the watch and a failed fetch may both ask
            await self._check_consumer_once()

    async def _check_consumer_once(self) -> None:
        try:
            info = await self.js.consumer_info(self.stream, self.durable)
        except nats.js.errors.NotFoundError:
            await self._recreate()
            return
        except (nats.errors.Error, TimeoutError) as e:  # cannot tell now (reconnecting, an election): next time
            log.debug("%s: consumer check: %s", self.durable, e)
            return
        if info.ack_floor is not None:
            self.floor = max(self.floor, int(info.ack_floor.stream_seq or 0))
        self.missing = None

    async def _recreate(self) -> None:
        self.missing = f"consumer {self.durable} missing"
        log.error("%s: the durable consumer is gone; making it again after position %d", self.durable, self.floor)
        try:
            await self.js.add_consumer(self.stream, self.config(self.floor))
        except nats.js.errors.APIError as e:
            try:  # another replica made it first (with its own start): it is back either way
                await self.js.consumer_info(self.stream, self.durable)
            except (nats.errors.Error, TimeoutError):
                log.error("%s: cannot make the consumer again: %s", self.durable, e.description)
                return
            self.missing = None
            return
        except (nats.errors.Error, TimeoutError) as e:
            log.error("%s: cannot make the consumer again: %s", self.durable, e)
            return
        self.recreated += 1
        self.missing = None
        log.warning("%s: consumer made again; events after position %d come (again)", self.durable, self.floor)

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
            except TimeoutError:  # nats-py's (a subclass) or asyncio's, which a batch fetch also raises: nothing yet
                continue
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                return
            except (nats.js.errors.ServiceUnavailableError, nats.js.errors.NotFoundError):
                await self._consumer_unanswered()
                continue
            except Exception:
                log.exception("%s: fetch failed", self.durable)
                await asyncio.sleep(self.max_retry_delay)
                continue
            for msg in msgs:
                self._take(msg)

    async def _consumer_unanswered(self) -> None:
        """Nobody answered a fetch: the consumer may be gone (checked, and made again), or briefly
        without a leader (then wait a little before fetching again)."""
        await self._check_consumer()
        if self.missing is not None:
            await asyncio.sleep(self.max_retry_delay)
        else:
            await asyncio.sleep(self.retry_delay)

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
                # In log order: an earlier event of this key that comes back (redelivered after a
                # crash) goes before a later one already waiting in the lane, which may be waiting
                # for exactly that earlier one.
                msg = min(queue, key=_position)
                async with self._turns.turn(self.group(msg.subject)):
                    if not self._may_handle():  # stopping, or the gate went elsewhere: hand the rest back at once
                        await self._hand_back(queue)
                        break
                    handled = await self._handle(msg, queue)
                if handled:
                    queue.remove(msg)
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

    async def _keep_in_hand(self) -> None:
        """Reset the ack timer of every message in hand, read ahead or being handled, so none is
        delivered again while we live and hold the gate."""
        while not self._stopping:
            await asyncio.sleep(self.ack_wait / 3)
            if not self._may_handle():
                continue
            for queue in list(self._queues.values()):
                for msg in list(queue):
                    with contextlib.suppress(Exception):  # settled meanwhile, or the connection is down
                        await msg.in_progress()

    # -- handling -----------------------------------------------------------------------------
    async def _handle(self, msg: Msg, lane: deque[Msg]) -> bool:
        """Handle one message: True once it is settled; False when it steps aside for an earlier
        message of its lane (it is still in hand, and is handled again after that one)."""
        position = _position(msg)
        admitted = admission.admit(RawEvent(position, msg.subject, msg.data), self.subjects)
        if isinstance(admitted, admission.Quarantined):
            self.quarantine.add(admitted)
            await self._settle(msg.ack)
            return True
        delivered = int(msg.metadata.num_delivered or 1)
        failures = max(delivered - 1, 0)  # earlier deliveries that did not finish
        waits = 0
        while self._may_handle():
            error = None
            try:
                with tracing.delivering(msg.headers):  # the handler continues the event's trace
                    token = _delivery.set(delivered)
                    try:
                        done = await self.handler(admitted, position)
                    finally:
                        _delivery.reset(token)
                if done:
                    await self._settle(msg.ack)
                    self.handled += 1
                    return True
                waits += 1
                if any(_position(m) < position for m in lane):
                    return False
            except Exception as e:
                failures += 1
                error = f"{type(e).__name__}: {e}"
                log.warning("%s: event at %s failed (attempt %d of %d): %s", self.durable, position, failures,
                            self.max_attempts, error, exc_info=failures == 1)
            if error is not None and failures >= self.max_attempts:
                await self._park(msg, admitted, position, error, failures)
                return True
            self.retries += 1
            with contextlib.suppress(Exception):
                await msg.in_progress()  # keep it in hand while we wait
            await asyncio.sleep(backoff(max(failures, waits), self.retry_delay, self.max_retry_delay))
        return True  # stopping, or the gate went elsewhere: left unacknowledged, it comes back

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
        await ended(self._task, self._keeping, self._watching, *self._lanes)
        await self._hand_back(taken)  # not finished here: another replica may take them now (acked ones stay acked)
        if self.gate is not None:
            await self.gate.stop()
        self._task = self._keeping = self._watching = None
        self._lanes.clear()
        self._queues.clear()
        self._in_hand = 0
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
            self._sub = None
