"""`Ledger`: one connection to an Agent Ledger deployment, as one tenant's user.

    async with await Ledger.connect() as ledger:
        started = await ledger.session.start(session_id="ses_lead")   # a SessionStatusResult
        async for event in ledger.events(thread_id="thd_demo"):       # history, then live
            ...

Each command call makes one command id (unless given) and sends it again on every retry of a
retryable error (`conflict`, `unavailable`, `rate_limited` once its `retry_after` has passed, no
responders, no reply) that can start within `deadline` seconds of the first attempt, so a retried
command is decided once. Errors are raised as the exception class of
their code (`agentledger.client.api`), each with its typed `details`.
"""

from __future__ import annotations

import asyncio
import os
import random
import typing
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

import msgspec

from agentledger.client import audit as audit_feed
from agentledger.client import credentials
from agentledger.client.api import EventsGroup, Groups, RateLimited, Unavailable, exception
from agentledger.client.connection import Connection, NoReply, connect
from agentledger.client.errors import BadReply, LedgerError
from agentledger.client.validation import actor as as_actor
from agentledger.client.validation import check, check_id, invalid
from agentledger.engine.subjects import Subjects
from agentledger.schemas.accounts import audit_stream
from agentledger.schemas.commands import Command
from agentledger.schemas.common import Actor
from agentledger.schemas.errors import AnyError
from agentledger.schemas.events import StoredEvent
from agentledger.schemas.queries import EventsPage, EventsRead, Query
from agentledger.schemas.replay import Replay, ReplayDiff
from agentledger.schemas.replies import CommandReply

R = TypeVar("R")
DEFAULT_URL = "nats://127.0.0.1:4222"
DEFAULT_TENANT = "tnt_default"
DEFAULT_PREFIX = "ledger"
DEFAULT_STREAM = "LEDGER"
DEFAULT_ACTOR = "usr_client"
DECIDE_WITHIN = 2.0
"""The engine decides a command within this long of its arrival or answers `unavailable`
(`serve --decide-within`): after a request that got no reply, a retry waits at least this long
after it, so the first attempt can never be decided after the retry was answered."""
MIN_POSITION_WAIT = 5.0  # how long the engine holds a query with min_position before `unavailable`
BACKOFF = (0.05, 1.0)  # first and largest pause between retries (full jitter)
EVENTS_PAGE = 1000


class _Answer(msgspec.Struct, Generic[R], frozen=True, kw_only=True):
    """A query reply with its result decoded straight into its type."""

    ok: bool
    position: int | None = None
    result: R | None = None
    error: AnyError | None = None


_DECODERS: dict[tuple[str, Any], msgspec.json.Decoder[Any]] = {}


def _decoder(kind: str, result: Any) -> msgspec.json.Decoder[Any]:
    """A reply decoder with the result typed, made once per result type."""
    key = (kind, result)
    if key not in _DECODERS:
        _DECODERS[key] = msgspec.json.Decoder(CommandReply[result] if kind == "command" else _Answer[result])
    return _DECODERS[key]


@cache
def _actor_fields(cls: type[msgspec.Struct]) -> frozenset[str]:
    """The fields of `cls` that hold an actor or a list of them (given as an id, they are converted)."""
    hints = typing.get_type_hints(cls)

    def holds_actor(t: Any) -> bool:
        return t is Actor or any(holds_actor(a) for a in typing.get_args(t))

    return frozenset(name for name, t in hints.items() if holds_actor(t))


@dataclass(frozen=True)
class Retry:
    """A retry about to be made: the request's subject, the attempt that failed (1 for the first),
    its error, and the seconds it waits before sending again."""

    subject: str
    attempt: int
    error: LedgerError
    pause: float


OnRetry = Callable[[Retry], None]


class _Sender:
    """Sends requests for the groups, with the retry rules above."""

    def __init__(self, connection: Connection, subjects: Subjects, tenant: str, actor: Actor, timeout: float,
                 deadline: float, on_retry: OnRetry | None = None) -> None:
        self.connection, self.subjects, self.tenant = connection, subjects, tenant
        self.actor, self.timeout, self.deadline = actor, timeout, deadline
        self.on_retry = on_retry
        self.position = 0  # the highest position a command of this client reached
        self.read_position = 0  # the highest read-model position a query reply reported

    def body(self, cls: type[msgspec.Struct], fields: Mapping[str, Any]) -> bytes:
        """The request, checked locally: what the engine would refuse as `invalid_command` is raised here."""
        body: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
        for name in _actor_fields(cls) & body.keys():
            try:
                value = body[name]
                body[name] = [as_actor(v) for v in value] if isinstance(value, list) else as_actor(value)
            except ValueError as e:
                raise exception(invalid(str(e), f"$.{name}")) from None
        if issubclass(cls, Command):
            body.setdefault("actor", self.actor)
            body.setdefault("command_id", f"cmd-{uuid.uuid4().hex}")  # one per call, the same on every retry
        return msgspec.json.encode(check(cls, msgspec.to_builtins(body)))

    async def send(self, subject: str, payload: bytes, decoder: msgspec.json.Decoder[Any], deadline: float | None = None,
                   timeout: float | None = None) -> Any:
        """The decoded reply. A retryable error is sent again, with backoff, as long as the retry
        starts within `deadline` seconds of the first attempt; then the last error is raised."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + (self.deadline if deadline is None else deadline)
        attempt = 0
        while True:
            sent = loop.time()
            try:
                data = await self.connection.request(subject, payload, timeout or self.timeout, self.tenant)
                try:
                    reply = decoder.decode(data)
                except (msgspec.DecodeError, msgspec.ValidationError) as e:
                    raise BadReply(subject, data[:4096], str(e)) from None
                if reply.ok:
                    return reply
                error = exception(reply.error)
            except LedgerError as e:
                error = e
            if not error.retryable:
                raise error
            attempt += 1
            pause = random.uniform(0, min(BACKOFF[1], BACKOFF[0] * 2**attempt))
            if isinstance(error, NoReply):  # it may still be decided: never retry before the engine's bound
                pause = max(pause, sent + DECIDE_WITHIN - loop.time())
            elif isinstance(error, RateLimited):  # the engine says when a retry is likely to be taken
                pause = max(pause, error.details.retry_after)
            if loop.time() + pause > give_up:
                raise error
            if self.on_retry is not None:
                self.on_retry(Retry(subject, attempt, error, pause))
            await asyncio.sleep(pause)

    async def command(self, cls: type[Command], result: type[R], fields: dict[str, Any]) -> R:
        payload = self.body(cls, fields)
        reply = await self.send(self.subjects.command(self.tenant, cls.NAME), payload, _decoder("command", result))
        self.position = max(self.position, reply.position or 0)
        return reply.result  # type: ignore[no-any-return]

    async def answer(self, cls: type[Query], result: type[R], fields: Mapping[str, Any], deadline: float | None = None,
                     timeout: float | None = None) -> _Answer[R]:
        reply: _Answer[R] = await self.send(self.subjects.query(self.tenant, cls.NAME), self.body(cls, fields),
                                            _decoder("query", result), deadline, timeout)
        self.read_position = max(self.read_position, reply.position or 0)
        return reply

    async def query(self, cls: type[Query], result: type[R], fields: dict[str, Any]) -> R:
        return (await self.answer(cls, result, fields)).result  # type: ignore[return-value]

    async def pages(self, cls: type[Query], result: type[Any], fields: dict[str, Any], items: str) -> AsyncIterator[Any]:
        """Every item of every page: on from `next_after` (or the last item's position) until it stops moving."""
        after = fields.get("after") or 0
        while True:
            page = await self.query(cls, result, {**fields, "after": after})
            rows = getattr(page, items)
            for row in rows:
                yield row
            if hasattr(page, "next_after"):
                following = page.next_after
            else:
                following = rows[-1].position if len(rows) >= (fields.get("limit") or 100) else after
            if following <= after:
                return
            after = following


def _checked(value: str, prefix: str, what: str) -> str:
    """An id the client itself is given (not a request field), checked as a request's would be."""
    try:
        return check_id(value, prefix, what.replace("_", " "))
    except ValueError as e:
        raise exception(invalid(str(e), what)) from None


def _actor(value: Actor | str) -> Actor:
    try:
        return as_actor(value)
    except ValueError as e:
        raise exception(invalid(str(e), "actor")) from None


class EventsFeed(EventsGroup):
    """`ledger.events.read(...)` reads one page; `ledger.events(...)` iterates the stored events
    (of a thread, or of the tenant): the history, then, with `follow`, live ones as they land."""

    def __init__(self, sender: _Sender) -> None:
        super().__init__(sender)
        self._feed = sender

    async def __call__(self, thread_id: str | None = None, *, after: int = 0,
                       follow: bool = True) -> AsyncGenerator[StoredEvent, None]:
        sender, waiting, pause = self._feed, False, BACKOFF[0]
        while True:
            fields = {"thread_id": thread_id, "after": after, "limit": EVENTS_PAGE,
                      "min_position": sender.read_position + 1 if waiting else None}
            try:  # a live wait: the engine holds it until the log moves past what it showed (or answers unavailable)
                reply = await sender.answer(EventsRead, EventsPage, fields, deadline=0 if waiting else None,
                                            timeout=sender.timeout + MIN_POSITION_WAIT if waiting else None)
            except Unavailable as e:
                if not waiting or not e.retryable:
                    raise
                await asyncio.sleep(pause)  # nothing new for a while, or no engine for now: keep following
                pause = min(pause * 2, BACKOFF[1])
                continue
            pause = BACKOFF[0]
            page = reply.result
            assert page is not None
            for event in page.events:
                yield event
            moved = page.next_after > after
            after = max(after, page.next_after)
            if not moved and not follow:
                return
            waiting = not moved


class Ledger(Groups):
    """A tenant's view of the ledger: `ledger.<group>.<name>(...)` for every command and query,
    `events(...)`, `audit(...)` and `replay(...)`."""

    events: EventsFeed

    def __init__(self, connection: Connection, *, tenant: str = DEFAULT_TENANT, prefix: str = DEFAULT_PREFIX,
                 stream: str = DEFAULT_STREAM, actor: Actor | str = DEFAULT_ACTOR, timeout: float = 5.0,
                 deadline: float = 10.0, on_retry: OnRetry | None = None) -> None:
        self._connection = connection
        self.tenant, self.prefix, self.stream = _checked(tenant, "tnt_", "tenant"), prefix, stream
        self._sender = _Sender(connection, Subjects(prefix), tenant, _actor(actor), timeout, deadline, on_retry)
        super().__init__(self._sender)
        self.events = EventsFeed(self._sender)
        # open audit iterations, held so that `close()` can give back what they hold (one a caller
        # broke out of is not finalised until later, when its connection may be gone)
        self._audits: set[AsyncGenerator[Any, None]] = set()

    @classmethod
    async def connect(cls, tenant: str | None = None, *, nats_url: str | None = None,
                      creds: str | os.PathLike[str] | None = None, prefix: str | None = None, stream: str | None = None,
                      actor: Actor | str | None = None, timeout: float = 5.0, deadline: float = 10.0,
                      env: Mapping[str, str] | None = None, cwd: Path | None = None,
                      on_retry: OnRetry | None = None) -> Ledger:
        """Connect as `tenant`'s user whose credentials the lookup finds (see `credentials.find`).

        Defaults come from the environment: `NATS_URL` (else nats://127.0.0.1:4222),
        `AGENTLEDGER_TENANT` (tnt_default), `AGENTLEDGER_PREFIX` (ledger), `AGENTLEDGER_STREAM`
        (LEDGER), `AGENTLEDGER_ACTOR` (usr_client, the actor of commands that name none).
        `timeout` bounds connecting and each attempt of a request; a retry starts only within
        `deadline` seconds of a call's first attempt; `on_retry` is called before each retry.
        Raises CredsFileMissing, NoCredentials, NotAuthorised, or Unavailable (ConnectionRefused at once)."""
        env = os.environ if env is None else env
        found = credentials.find(creds, env=env, cwd=cwd)
        url = nats_url or env.get("NATS_URL") or DEFAULT_URL
        connection = await connect(url, found.path, timeout=timeout, reconnect=True, looked=found.looked)
        return cls(connection, tenant=tenant or env.get("AGENTLEDGER_TENANT") or DEFAULT_TENANT,
                   prefix=prefix or env.get("AGENTLEDGER_PREFIX") or DEFAULT_PREFIX,
                   stream=stream or env.get("AGENTLEDGER_STREAM") or DEFAULT_STREAM,
                   actor=actor or env.get("AGENTLEDGER_ACTOR") or DEFAULT_ACTOR, timeout=timeout, deadline=deadline,
                   on_retry=on_retry)

    @property
    def nc(self) -> Any:
        """The underlying nats-py connection."""
        return self._connection.nc

    @property
    def position(self) -> int:
        """The highest log position this client's commands reached: pass it as a query's
        `min_position` to read your own writes from any replica."""
        return self._sender.position

    async def close(self) -> None:
        """Close the connection, after giving back what open `audit()` iterations hold."""
        for feed in list(self._audits):
            await feed.aclose()
        await self._connection.close()

    async def __aenter__(self) -> Ledger:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def audit(self, durable: str, *, after: int = 0, thread_id: str | None = None,
              follow: bool = True) -> AsyncGenerator[audit_feed.AuditRecord, None]:
        """The tenant's events from its audit stream `AUDIT_<stream>`, for auditors, through the
        durable consumer `durable` (created on first use): the same name resumes where it stopped.
        What it handed out and was not yet acknowledged goes back when it stops (`aclose()`, or `close()`)."""
        subjects = self._sender.subjects
        subject = subjects.thread_filter(self.tenant, _checked(thread_id, "thd_", "thread_id")) if thread_id \
            else subjects.tenant_filter(self.tenant)
        feed = audit_feed.read(self.nc.jetstream(timeout=self._sender.timeout), audit_stream(self.stream),
                               subject, durable, after, follow)
        self._audits = {f for f in self._audits if getattr(f, "ag_frame", None) is not None} | {feed}  # not the finished
        return feed

    @overload
    async def replay(self, thread_id: str, at: int | None = None) -> Replay: ...

    @overload
    async def replay(self, thread_id: str, at: int | None, diff: int) -> ReplayDiff: ...

    async def replay(self, thread_id: str, at: int | None = None, diff: int | None = None) -> Replay | ReplayDiff:
        """The thread as it was at position `at` (None: now), rebuilt from its history with the
        engine's own model (as `agentledger replay` does); with `diff`, what changed between the two."""
        from agentledger.client import replay

        return await replay.replay(self, thread_id, at, diff)

