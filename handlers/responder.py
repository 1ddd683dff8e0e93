"""Request/reply on plain nats-py subscriptions: each subject pattern in a queue group (replicas
share the load), each request in its own task (at most `max_workers` at once per pattern), and
every request answered exactly once, whatever the handler does. (Why plain subscriptions rather
than a handler framework: docs/architecture.md, "Requests on plain nats-py subscriptions".)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agentledger.handlers.auth.identity import REQUEST_INFO

log = logging.getLogger("agentledger.requests")

Answer = Callable[[Msg], Awaitable[bytes]]

_HEADER_FRAME = len(b"NATS/1.0\r\n\r\n")


def header_bytes(headers: dict[str, str] | None) -> int:
    """The bytes of a request's headers as its sender wrote them: each `Name: value\r\n` line as
    nats-py kept it, and the `NATS/1.0` frame. The broker's own `Nats-Request-Info` is not the
    sender's and is left out, so a body's limit is not lowered by what the server adds."""
    lines = sum(len(name.encode()) + len(value.encode()) + 4 for name, value in (headers or {}).items()
                if name != REQUEST_INFO)
    return lines + _HEADER_FRAME if lines else 0


class Responder:
    def __init__(self, nc: Client, max_workers: int = 64) -> None:
        self.nc = nc
        self.max_workers = max_workers
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self, subject: str, queue: str, answer: Answer, failed: Callable[[str], bytes]) -> None:
        """Answer requests on `subject`. `answer` should not raise; if it does, the requester gets
        `failed(subject)`, called while the exception is handled (to log it and build an error
        reply), rather than waiting for a timeout."""
        slots = asyncio.Semaphore(self.max_workers)
        tasks = self._tasks

        async def run(msg: Msg) -> None:
            try:
                try:
                    data = await answer(msg)
                except Exception:
                    data = failed(msg.subject)
                if msg.reply:
                    await self.nc.publish(msg.reply, data)
            except nats.errors.Error as e:  # the connection went away: the requester will retry
                log.warning("reply on %s not sent: %s: %s", msg.subject, type(e).__name__, e)
            finally:
                slots.release()

        async def deliver(msg: Msg) -> None:
            # Waiting for a slot here holds back further delivery on this subscription, so a
            # burst queues in the client (up to its pending limits) instead of in tasks.
            await slots.acquire()
            task = asyncio.create_task(run(msg))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            # Let the new task reach its append before the next request is taken: the client's
            # flusher then sends each append as it is made, and the log stores one while the
            # engine decides the next, instead of a burst of requests being decided first and
            # their appends reaching the log all at once (a convoy: the engine idles while the
            # log syncs the burst, then the log idles while the engine decides the next one).
            await asyncio.sleep(0)

        self._subs.append(await self.nc.subscribe(subject, queue=queue, cb=deliver))

    async def stop(self) -> None:
        """Stop taking requests (unsubscribe: the server sends new ones to other replicas), then
        let the ones already taken finish and reply."""
        subs, self._subs = self._subs, []
        for sub in subs:
            try:
                await sub.drain()
            except nats.errors.Error as e:  # the server went first
                log.warning("stop serving %s: %s", sub.subject, e)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
