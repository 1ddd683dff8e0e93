"""Where the CLI talks to: the shared connection options, and one request/reply over NATS.

Credentials are found and the connection made by the Python client's own code
(`agentledger.client.credentials`, `agentledger.client.connection`), so the CLI and the client
look in the same places and fail the same way. Transport failures are the protocol's
`unavailable` error, so they print (and come out of `--json`) exactly like an error reply from
the engine; the client's own failures (no credentials, a missing creds file, credentials the
server refuses) print in one line with exit codes of their own.

This module is imported to build the options of every command: it imports nothing heavy itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.abc
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from nats.aio.client import Client, RawCredentials

    from agentledger.client.connection import Connection
    from agentledger.client.ledger import Ledger
    from agentledger.engine.subjects import Subjects

PANEL = "Common options"
DEFAULT_TENANT = "tnt_default"
DEFAULT_URL = "nats://127.0.0.1:4222"
DEFAULT_PREFIX = "ledger"
DEFAULT_STREAM = "LEDGER"
DEFAULT_TIMEOUT = 5.0
# The client's own errors (raised before anything is sent), with sysexits(3) codes.
EXIT_CREDS_MISSING, EXIT_NOT_AUTHORISED, EXIT_NO_CREDENTIALS = 66, 77, 78
CLIENT_EXITS = {"creds_file_missing": EXIT_CREDS_MISSING, "not_authorised": EXIT_NOT_AUTHORISED,
                "no_credentials": EXIT_NO_CREDENTIALS}


def _id_option(prefix: str, what: str) -> Callable[[str | None], str | None]:
    def check(value: str | None) -> str | None:
        from agentledger.client.validation import check_id

        try:
            return value if value is None else check_id(value, prefix, what)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from None

    return check


check_thread = _id_option("thd_", "thread id")

Tenant = Annotated[str, typer.Option("--tenant", envvar="AGENTLEDGER_TENANT", callback=_id_option("tnt_", "tenant id"),
                                     rich_help_panel=PANEL, help="tenant id (tnt_…)")]
NatsUrl = Annotated[str, typer.Option("--nats-url", envvar="NATS_URL", rich_help_panel=PANEL, help="NATS server")]
Prefix = Annotated[str, typer.Option("--prefix", envvar="AGENTLEDGER_PREFIX", rich_help_panel=PANEL,
                                     help="subject prefix the engine serves")]
Stream = Annotated[str, typer.Option("--stream", envvar="AGENTLEDGER_STREAM", rich_help_panel=PANEL,
                                     help="event stream to read the log from")]
Timeout = Annotated[float, typer.Option("--timeout", min=0.1, rich_help_panel=PANEL,
                                        help="seconds to wait for NATS and the reply, connecting included")]
Creds = Annotated[str | None, typer.Option(
    "--creds", rich_help_panel=PANEL,
    help="NATS credentials (.creds); default: NATS_CREDS, else .agentledger/auth/admin.creds here or in a parent "
         "directory (what `make run` writes), else ~/.config/agentledger/credentials.creds")]
Json = Annotated[bool, typer.Option("--json", rich_help_panel=PANEL, help="print raw JSON instead of a summary")]


@dataclass(frozen=True)
class Target:
    nats_url: str
    prefix: str
    tenant: str
    timeout: float
    creds: str | None = None

    @property
    def subjects(self) -> Subjects:
        from agentledger.engine.subjects import Subjects

        return Subjects(self.prefix)


class _NoWebSockets(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> None:
        if name.partition(".")[0] == "aiohttp":
            raise ModuleNotFoundError(f"{name} is not loaded by the CLI's NATS connections", name=name)


def without_websockets(url: str) -> None:
    """Import nats-py as if its optional WebSocket extra (aiohttp) were not installed.

    nats-py imports aiohttp when it is imported, for its WebSocket transport, and that is about
    half of what a command costs before it sends anything (docs/clients.md); a connection to
    `nats://` or `tls://` never uses it. Once nats-py is loaded this changes nothing, and aiohttp
    itself stays importable (the web timeline serves with it)."""
    schemes = {server.strip().partition("://")[0] for server in url.split(",")}
    if "nats.aio.transport" in sys.modules or "aiohttp" in sys.modules or schemes & {"ws", "wss"}:
        return
    finder = _NoWebSockets()
    sys.meta_path.insert(0, finder)
    try:
        importlib.import_module("nats.aio.transport")
    finally:
        sys.meta_path.remove(finder)


async def connection(target: Target, on_closed: Callable[[], None] | None = None) -> Connection:
    """The client's connection for a few requests; with `on_closed`, a long-lived one that rides out
    reconnects. `target.timeout` bounds the attempt; a refused connection or refused credentials end it at once."""
    without_websockets(target.nats_url)
    from agentledger.client import credentials
    from agentledger.client.connection import connect as open_connection

    found = credentials.find(target.creds)
    return await open_connection(target.nats_url, found.path, timeout=target.timeout, reconnect=on_closed is not None,
                                 looked=found.looked, on_closed=on_closed)


async def connect(target: Target, on_closed: Callable[[], None] | None = None) -> Client:
    """The nats-py connection of `connection(target, on_closed)`."""
    return (await connection(target, on_closed)).nc


async def request(target: Target, subject: str, body: bytes) -> bytes:
    """Send one request and return the reply's exact bytes; `target.timeout` bounds connecting and
    the reply together."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + target.timeout
    link = await connection(target)
    try:
        return await link.request(subject, body, max(deadline - loop.time(), 0.01), target.tenant)
    finally:
        await link.close()


def tool_connect(timeout: float = DEFAULT_TIMEOUT) -> Callable[[str, RawCredentials], Awaitable[Client]]:
    """How deployment tools (`tenant add`, `tenant revoke`) connect with the keys they hold: the
    client's connection, which fails at once and says why."""
    from agentledger.client.connection import connect as open_connection  # the deployment tools keep nats-py whole

    async def connect_with(url: str, creds: RawCredentials) -> Client:
        return (await open_connection(url, creds, timeout=timeout)).nc

    return connect_with


@contextlib.asynccontextmanager
async def ledger(target: Target) -> AsyncIterator[Ledger]:
    """The Python client on one connection for a few requests, each call retried within `target.timeout`."""
    from agentledger.client.ledger import Ledger

    link = await connection(target)
    try:
        yield Ledger(link, tenant=target.tenant, prefix=target.prefix, timeout=target.timeout, deadline=target.timeout)
    finally:
        await link.close()


def fail(e: Exception) -> NoReturn:
    """Print an error raised on the way (the engine's, or the client's own) in one line, as an error
    reply prints, and exit with its code."""
    from rich.text import Text

    from agentledger.cli import output
    from agentledger.client.errors import LedgerError
    from agentledger.schemas.errors import DomainError

    error = e.error if isinstance(e, DomainError | LedgerError) else None
    if error is not None:
        output.error(error)
        raise typer.Exit(output.exit_code(error))
    assert isinstance(e, LedgerError), e
    output.err.print(Text.assemble(("error ", "bold red"), (e.code, "bold red"), ": ", e.message))
    raise typer.Exit(CLIENT_EXITS.get(e.code, output.EXIT_REFUSED))
