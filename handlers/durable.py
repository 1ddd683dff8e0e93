"""A durable, strictly ordered worker over part of the log, shared by every replica.

Process managers and effect handlers use it: the consumer is durable (a restart resumes after
the last acknowledged event) and allows one unacknowledged event at a time, so events are
handled in log order, once per group, whichever replica fetches them. An event is acknowledged
only after its handler finished; a crash before that redelivers it, which the handlers make
harmless with command ids derived from the event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from engine import admission
from engine.store import RawEvent
from engine.subjects import Subjects
from handlers.observability import tracing
from schemas.events import Envelope

log = logging.getLogger("agentledger.workers")

Handler = Callable[[Envelope, int], Awaitable[bool]]
"""Returns True when the event is done (ack), False to have it redelivered later."""


class DurableWorker:
    def __init__(self, js: JetStreamContext, stream: str, subject_filter: str, durable: str, handler: Handler,
                 subjects: Subjects, ack_wait: float = 30.0, retry_delay: float = 1.0) -> None:
        self.js, self.stream, self.filter, self.durable = js, stream, subject_filter, durable
        self.subjects = subjects
        self.quarantine = admission.Quarantine()  # messages skipped because they failed admission
        self.handler = handler
        self.ack_wait, self.retry_delay = ack_wait, retry_delay
        self._task: asyncio.Task[None] | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._stopping = False
        self.handled = 0

    async def start(self) -> None:
        config = ConsumerConfig(durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT, max_ack_pending=1,
                                deliver_policy=DeliverPolicy.ALL, filter_subject=self.filter, ack_wait=self.ack_wait)
        self._sub = await self.js.pull_subscribe(self.filter, durable=self.durable, stream=self.stream, config=config)
        self._task = asyncio.create_task(self._run(self._sub), name=f"worker-{self.durable}")

    async def _run(self, sub: JetStreamContext.PullSubscription) -> None:
        while not self._stopping:
            try:
                msgs = await sub.fetch(1, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                return
            except Exception:
                log.exception("%s: fetch failed", self.durable)
                await asyncio.sleep(self.retry_delay)
                continue
            for msg in msgs:
                position = int(msg.metadata.sequence.stream)
                admitted = admission.admit(RawEvent(position, msg.subject, msg.data), self.subjects)
                if isinstance(admitted, admission.Quarantined):
                    self.quarantine.add(admitted)
                    await msg.ack()
                    continue
                try:
                    with tracing.delivering(msg.headers):  # the handler continues the event's trace
                        done = await self.handler(admitted, position)
                except Exception:
                    log.exception("%s: handler failed at %s", self.durable, msg.metadata.sequence.stream)
                    done = False
                if done:
                    await msg.ack()
                    self.handled += 1
                else:
                    await msg.nak(delay=self.retry_delay)

    async def stop(self) -> None:
        """Stop between events: an event being handled is left unacknowledged and comes back.

        The flag matters: a pull fetch can turn a cancellation into its own timeout error, which
        the loop treats as "nothing yet", so cancelling alone may not end it."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
            self._sub = None
