"""One NATS connection for a client, and one request over it, failing at once and saying why.

nats-py on its own keeps retrying a server that refuses the TCP connection for about two
minutes, whatever its connect timeout says, and reports refused credentials as a plain error
among others. Here every failed attempt is looked at as it happens (nats-py's error callback):
a refused connection, refused credentials or a publish the server does not permit ends the
attempt at once with its own error; only a server that does not answer waits out `timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.client import DEFAULT_MAX_RECONNECT_ATTEMPTS, DEFAULT_RECONNECT_TIME_WAIT, Client, RawCredentials

from agentledger.client.api import Forbidden, Unavailable
from agentledger.client.errors import LedgerError, NoCredentials, NotAuthorised
from agentledger.schemas.errors import Forbidden as ForbiddenError
from agentledger.schemas.errors import ForbiddenDetails
from agentledger.schemas.errors import Unavailable as UnavailableError

_REFUSED = f"[Errno {errno.ECONNREFUSED}]"
_AUTH = ("authorization violation", "authentication expired", "authentication revoked", "user authentication")


class ConnectionRefused(Unavailable):
    """Nothing listens at the server's address: raised at once, not after the timeout."""


class NoResponders(Unavailable):
    """Nothing answers on the request's subject: no engine runs (or the prefix is wrong)."""


class NoReply(Unavailable):
    """No reply in time: the engine may still decide the request."""


class ConnectionClosed(Unavailable):
    """The connection was closed (by `close()`, or after its reconnects gave out): not retryable on it."""


def unavailable(message: str, cls: type[Unavailable] = Unavailable) -> Unavailable:
    retryable = cls is not ConnectionClosed
    return cls(message, retryable=retryable, details=None, error=UnavailableError(message=message, retryable=retryable))


def _refused(e: BaseException) -> bool:
    return isinstance(e, ConnectionRefusedError) or (isinstance(e, OSError) and _REFUSED in str(e))


def _auth(e: BaseException) -> bool:
    return isinstance(e, nats.errors.AuthorizationError) or any(word in str(e).lower() for word in _AUTH)


def _why(e: BaseException) -> str:
    return str(e).removeprefix("nats: ").strip("'") or type(e).__name__


class Connection:
    """A connected nats-py client, and what the server said about it since: `fatal` once the
    server refuses its credentials on a reconnect (the connection is then closed)."""

    def __init__(self, url: str, creds: Path | RawCredentials | None, looked: tuple[str, ...]) -> None:
        self.url, self.creds, self.looked = url, creds, looked
        self.nc = Client()
        self.fatal: LedgerError | None = None
        self._failures: list[BaseException] = []
        self._stop = asyncio.Event()
        self._denied: dict[str, set[asyncio.Future[str]]] = {}  # publishes waiting for a reply, by subject
        self._servers = [s.strip() for s in url.split(",") if s.strip()]

    def _refusal(self, e: BaseException) -> LedgerError:
        if self.creds is None:
            return NoCredentials(self.url, self.looked)
        return NotAuthorised(self.url, None if isinstance(self.creds, RawCredentials) else self.creds, _why(e))

    async def _on_error(self, e: Exception) -> None:
        self._failures.append(e)
        text = str(e)
        if "permissions violation" in text.lower():
            for subject, waiting in self._denied.items():
                if f'"{subject}"' in text:
                    for denied in waiting:
                        if not denied.done():
                            denied.set_result(_why(e))
        elif _auth(e):
            if self.nc.is_connected or self.nc.is_reconnecting:  # refused on a reconnect: give up for good
                self.fatal = self._refusal(e)
                asyncio.get_running_loop().create_task(self.nc.close())
            self._stop.set()
        elif _refused(e) and sum(map(_refused, self._failures)) >= len(self._servers) and not self.nc.is_reconnecting:
            self._stop.set()

    async def open(self, timeout: float, reconnect: bool, on_closed: Callable[[], None] | None = None) -> Connection:
        async def closed() -> None:
            if on_closed is not None:
                on_closed()

        connecting = asyncio.ensure_future(self.nc.connect(
            servers=self._servers, connect_timeout=timeout, allow_reconnect=reconnect,  # type: ignore[arg-type]
            error_cb=self._on_error, closed_cb=closed, user_credentials=self.creds,
            # a long-lived connection reconnects as nats-py does by default; a short one tries once
            max_reconnect_attempts=DEFAULT_MAX_RECONNECT_ATTEMPTS if reconnect else 1,
            reconnect_time_wait=DEFAULT_RECONNECT_TIME_WAIT if reconnect else 0))
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait([connecting, stopped], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if connecting.done() and connecting.exception() is None:
            return self
        connecting.cancel()
        with contextlib.suppress(BaseException):
            await connecting
        with contextlib.suppress(Exception):
            await self.nc.close()
        raise self._failed(timeout, None if not connecting.done() or connecting.cancelled() else connecting.exception())

    def _failed(self, timeout: float, raised: BaseException | None) -> LedgerError:
        seen = [*self._failures, *([raised] if raised is not None else [])]
        for e in seen:
            if _auth(e):
                return self._refusal(e)
        if seen and all(_refused(e) or isinstance(e, nats.errors.NoServersError) for e in seen) and any(map(_refused, seen)):
            return unavailable(f"cannot reach NATS at {self.url}: connection refused (is the server running?)",
                               ConnectionRefused)
        cause = next((e for e in reversed(seen) if not isinstance(e, nats.errors.NoServersError)), raised)
        if isinstance(cause, Exception) and not isinstance(cause, OSError | nats.errors.Error | TimeoutError) \
                and self.creds is not None:  # nats-py could not use the file: not a .creds file
            return NotAuthorised(self.url, None if isinstance(self.creds, RawCredentials) else self.creds,
                                 f"cannot use them: {_why(cause)}")
        why = _why(cause) if cause is not None else "no answer"
        return unavailable(f"cannot reach NATS at {self.url} within {timeout:g}s: {why}")

    async def request(self, subject: str, body: bytes, timeout: float, tenant: str = "unknown") -> bytes:
        """The reply's bytes. No responders and no reply in time are `unavailable` (retryable); a
        publish the server does not permit these credentials is `forbidden`, at once."""
        if self.fatal is not None:
            raise self.fatal
        denied: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        waiting = self._denied.setdefault(subject, set())
        waiting.add(denied)
        asking: asyncio.Future[Any] = asyncio.ensure_future(self.nc.request(subject, body, timeout=timeout))
        try:
            await asyncio.wait({asking, denied}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.discard(denied)
            if not waiting:
                self._denied.pop(subject, None)
            if not asking.done():
                asking.cancel()
                with contextlib.suppress(BaseException):
                    await asking
        if denied.done():
            details = ForbiddenDetails(principal="unknown", role="unknown", tenant=tenant)
            message = f"NATS at {self.url} does not let these credentials send on {subject} ({denied.result()})"
            raise Forbidden(message, details=details, error=ForbiddenError(message=message, details=details))
        try:
            data: bytes = asking.result().data
            return data
        except nats.errors.NoRespondersError:
            raise unavailable(f"no engine answers on {subject} (check the NATS URL and the prefix)", NoResponders) from None
        except nats.errors.TimeoutError:
            raise unavailable(f"no reply on {subject} within {timeout:g}s", NoReply) from None
        except nats.errors.ConnectionClosedError:
            if self.fatal is None and self.nc.last_error is not None and _auth(self.nc.last_error):
                self.fatal = self._refusal(self.nc.last_error)  # the server closed it: revoked or expired
            raise self.fatal or unavailable(f"the connection to {self.url} is closed", ConnectionClosed) from None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.nc.close()


async def connect(url: str, creds: Path | RawCredentials | None, *, timeout: float, reconnect: bool = False,
                  looked: tuple[str, ...] = (), on_closed: Callable[[], None] | None = None) -> Connection:
    """A connection to `url` (servers separated by commas) with `creds` (None: without any; if the
    server wants some, NoCredentials names where the lookup went, `looked`). `reconnect`: a
    long-lived connection that rides out outages; otherwise one for a few requests."""
    return await Connection(url, creds, looked).open(timeout, reconnect, on_closed)
