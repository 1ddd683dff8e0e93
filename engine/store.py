"""The event store on JetStream: create, append with an expected position, read, follow.

Positions are stream sequences. A boundary is one subject filter from `engine.subjects`; an
append carries that exact filter as `Nats-Expected-Last-Subject-Sequence-Subject`, so the log
itself rejects a write decided on stale state, whichever engine replica made it.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

H_EXPECTED_SEQ = "Nats-Expected-Last-Subject-Sequence"
H_EXPECTED_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
# The same two facts in headers of the ledger's own: JetStream drops the `Nats-Expected-*` ones when
# it sources a message into another stream (a tenant's audit stream), and these it keeps.
H_LEDGER_EXPECTED = "Ledger-Expected-Position"
H_LEDGER_BOUNDARY = "Ledger-Boundary"
CONFLICT_CODES = frozenset({10071, 10164})  # 10164: R3 leader already has a check in flight for this filter
READ_PAGE = 1000
# an append that may or may not have landed, or found no stream leader (an R3 node died): retryable
_UNREACHABLE = (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionClosedError,
                NoStreamResponseError)


class ConcurrencyConflict(Exception):
    """The boundary moved past the expected position: re-read it and decide again. `last` is the
    position the log reported for the checked filter (10071 says it; 10164 does not)."""

    def __init__(self, boundary: str, last: int | None = None) -> None:
        super().__init__(boundary)
        self.last = last


def _conflict(boundary: str, e: APIError) -> ConcurrencyConflict:
    tail = (e.description or "").rpartition(":")[2].strip()
    return ConcurrencyConflict(boundary, int(tail) if tail.isdigit() else None)


class LogUnavailable(Exception):
    """The log could not be reached or did not answer in time."""


@dataclass(frozen=True)
class RawEvent:
    position: int
    subject: str
    data: bytes
    # (filter, position): the log accepted this message only because the last message on `filter`
    # was then at `position` (its stored expected-sequence headers). Set on the live follower's events.
    condition: tuple[str, int] | None = None


def _condition(headers: dict[str, str] | None) -> tuple[str, int] | None:
    if not headers or H_EXPECTED_SUBJECT not in headers:
        return None
    expected = headers.get(H_EXPECTED_SEQ, "")
    return (headers[H_EXPECTED_SUBJECT], int(expected)) if expected.isascii() and expected.isdigit() else None


def _parse_header_lines(raw: bytes) -> dict[str, str]:
    """nats-py 2.16's header parser, with its per-character whitespace scan of each name done by
    `str.split` instead: the same result, in C (every direct get carries several headers per message,
    so the scan dominated loading a boundary)."""
    out: dict[str, str] = {}
    for line in raw.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if key and key.split() != [key]:
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out


class EventStore:
    def __init__(self, nc: Client, stream: str = "LEDGER", timeout: float = 5.0,
                 header_source: Callable[[], dict[str, str]] | None = None) -> None:
        """`header_source`: headers every append carries besides the expected position (the
        command's trace, so an event names the request that made it)."""
        self.header_source = header_source
        if hasattr(nc, "_parse_header_lines"):
            nc._parse_header_lines = _parse_header_lines  # type: ignore[method-assign]
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=timeout)
        self.stream = stream
        self.timeout = timeout
        self._direct = f"$JS.API.DIRECT.GET.{stream}"
        self._leader_get = f"$JS.API.STREAM.MSG.GET.{stream}"
        self._replicated: bool | None = None  # learnt from the stream's config on first use

    async def ensure_stream(self, subjects: list[str], replicas: int = 1) -> None:
        """Create or update the stream; deletes and purges are denied: the log is the audit record."""
        config = StreamConfig(name=self.stream, subjects=subjects, storage=StorageType.FILE, num_replicas=replicas,
                              allow_direct=True, deny_delete=True, deny_purge=True, discard=DiscardPolicy.OLD)
        self._replicated = replicas > 1
        try:
            await self.js.stream_info(self.stream)
        except NotFoundError:
            await self.js.add_stream(config)
        else:
            await self.js.update_stream(config)

    def _event_headers(self, expected: int, boundary: str) -> dict[str, str]:
        """The append's conditions for JetStream, and what an auditor needs to see of them."""
        headers = {H_EXPECTED_SEQ: str(expected), H_EXPECTED_SUBJECT: boundary,
                   H_LEDGER_EXPECTED: str(expected), H_LEDGER_BOUNDARY: boundary}
        if self.header_source is not None:
            headers.update(self.header_source())
        return headers

    async def append(self, subject: str, boundary: str, data: bytes, expected: int) -> int:
        headers = self._event_headers(expected, boundary)
        try:
            ack = await self.js.publish(subject, data, headers=headers)
        except APIError as e:
            if e.err_code in CONFLICT_CODES:
                raise _conflict(boundary, e) from e
            if e.code == 503:  # no stream leader for a moment (a node died, an election runs): retry
                raise LogUnavailable(str(e)) from e
            raise
        except _UNREACHABLE as e:
            raise LogUnavailable(str(e) or type(e).__name__) from e
        return int(ack.seq)

    async def get(self, position: int) -> RawEvent | None:
        """One message by position (from the leader on a replicated stream)."""
        if await self.replicated():
            return await self._from_leader({"seq": position})
        msg = await self._request(self._direct, {"seq": position})
        headers = msg.headers or {}
        if headers.get("Status") is not None:
            return None
        return RawEvent(int(headers["Nats-Sequence"]), headers["Nats-Subject"], msg.data)

    async def first_subject(self, subject_filter: str) -> str | None:
        """The subject of the first message on `subject_filter`, never behind an acknowledged write.
        (First, not last: a claim is only ever appended as the first message of its filter, so a
        message someone published after it cannot redirect the lookup.)"""
        request = {"seq": 1, "next_by_subj": subject_filter}
        if await self.replicated():
            first = await self._from_leader(request)
            return None if first is None else first.subject
        headers = (await self._request(self._direct, request)).headers or {}
        if headers.get("Status") is not None:
            return None
        return headers["Nats-Subject"]

    async def replicated(self) -> bool:
        if self._replicated is None:
            info = await self.js.stream_info(self.stream)
            self._replicated = (info.config.num_replicas or 1) > 1
        return self._replicated

    async def read_latest(self, boundary: str, after: int = 0) -> list[RawEvent]:
        """Like `read`, but never behind an acknowledged write.

        On a replicated stream any replica answers a direct get, and a follower may not yet hold
        what the leader acknowledged; a decision that refuses or does nothing must not rest on
        such a read. So there the stream leader answers, one message per request (these reads
        are short: the events a model is missing)."""
        if not await self.replicated():
            return await self.read(boundary, after=after)
        out: list[RawEvent] = []
        while True:
            msg = await self._from_leader({"seq": (out[-1].position if out else after) + 1, "next_by_subj": boundary})
            if msg is None:
                return out
            out.append(msg)

    async def _request(self, subject: str, request: dict[str, object]) -> Msg:
        try:
            return await self.nc.request(subject, json.dumps(request).encode(), timeout=self.timeout)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
            raise LogUnavailable(str(e) or type(e).__name__) from e

    async def _from_leader(self, request: dict[str, object]) -> RawEvent | None:
        body = json.loads((await self._request(self._leader_get, request)).data)
        if "error" in body:
            if body["error"].get("code") == 404:
                return None
            raise LogUnavailable(body["error"].get("description", "stream message get failed"))
        message = body["message"]
        return RawEvent(int(message["seq"]), message["subject"], base64.b64decode(message.get("data") or b""))

    async def read(self, boundary: str, after: int = 0, limit: int | None = None,
                   up_to: int | None = None) -> list[RawEvent]:
        """Events matching `boundary` with position > `after`, in order, by batched direct get."""
        out: list[RawEvent] = []
        start = after + 1
        while limit is None or len(out) < limit:
            batch = READ_PAGE if limit is None else min(READ_PAGE, limit - len(out))
            page, more = await self._direct_batch(boundary, start, batch)
            for ev in page:
                if up_to is not None and ev.position > up_to:
                    return out
                out.append(ev)
            if not more or not page:
                return out
            start = page[-1].position + 1
        return out

    async def _batch_get(self, request: dict[str, object]) -> tuple[list[Msg], dict[str, str]]:
        """One batched direct get: the messages, and the headers of the status message that ends it.
        Messages are collected by a subscription callback (a timed wait per message would cost more
        than the message)."""
        inbox = self.nc.new_inbox()
        msgs: list[Msg] = []
        done: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

        async def collect(msg: Msg) -> None:
            headers = msg.headers or {}
            if "Status" in headers:
                if not done.done():
                    done.set_result(headers)
            else:
                msgs.append(msg)

        sub = await self.nc.subscribe(inbox, cb=collect)
        try:
            await self.nc.publish(self._direct, json.dumps(request).encode(), reply=inbox)
            try:
                end = await asyncio.wait_for(done, self.timeout)
            except TimeoutError as e:
                raise LogUnavailable("direct get timed out") from e
        finally:
            await sub.unsubscribe()
        return msgs, end

    async def _direct_batch(self, boundary: str, start: int, batch: int) -> tuple[list[RawEvent], bool]:
        msgs, end = await self._batch_get({"seq": start, "next_by_subj": boundary, "batch": batch})
        page = [RawEvent(int(m.headers["Nats-Sequence"]), m.headers["Nats-Subject"], m.data)  # type: ignore[index]
                for m in msgs]
        if end.get("Status") == "404":
            return page, False
        return page, int(end.get("Nats-Num-Pending", "0")) > 0

    async def count(self, subject_filter: str) -> int:
        """How many messages match `subject_filter`: one batched direct get of the first of them,
        whose end says how many more there are."""
        msgs, end = await self._batch_get({"seq": 1, "next_by_subj": subject_filter, "batch": 1})
        if end.get("Status") == "404":
            return len(msgs)
        return len(msgs) + int(end.get("Nats-Num-Pending", "0"))

    async def last_position(self, boundary: str) -> int:
        if await self.replicated():
            last = await self._from_leader({"last_by_subj": boundary})
            return 0 if last is None else last.position
        headers = (await self._request(self._direct, {"last_by_subj": boundary})).headers or {}
        if headers.get("Status") == "404":
            return 0
        return int(headers["Nats-Sequence"])

    async def follow(self, subject_filter: str, after: int,
                     handler: Callable[[RawEvent], Awaitable[None] | None]) -> JetStreamContext.PushSubscription:
        """Deliver every event after `after`, then live ones, in order (an ordered consumer)."""

        async def on_msg(msg: Msg) -> None:
            result = handler(RawEvent(int(msg.metadata.sequence.stream), msg.subject, msg.data, _condition(msg.headers)))
            if asyncio.iscoroutine(result):
                await result

        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1)
        return await self.js.subscribe(subject_filter, cb=on_msg, ordered_consumer=True, config=config,
                                       stream=self.stream)

