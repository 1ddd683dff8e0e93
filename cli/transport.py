"""Where the CLI talks to: the shared connection options, and one request/reply over NATS.

Transport failures are raised as the protocol's `unavailable` error, so they print (and come
out of `--json`) exactly like an error reply from the engine.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import nats
import nats.errors
import typer
from nats.aio.client import Client

from agentledger.engine.subjects import Subjects
from agentledger.schemas.errors import DomainError, Forbidden, ForbiddenDetails, Unavailable
from agentledger.schemas.ids import TENANT_RE, id_pattern

PANEL = "Common options"
_TENANT = re.compile(TENANT_RE)
_THREAD = re.compile(id_pattern("thd_"))


def _check_tenant(value: str) -> str:
    if not _TENANT.match(value):
        raise typer.BadParameter(f"must match {TENANT_RE}")
    return value


def check_thread(value: str | None) -> str | None:
    if value is not None and not _THREAD.match(value):
        raise typer.BadParameter(f"must match {_THREAD.pattern}")
    return value


Tenant = Annotated[str, typer.Option("--tenant", envvar="AGENTLEDGER_TENANT", callback=_check_tenant,
                                     rich_help_panel=PANEL, help="tenant id (tnt_…)")]
NatsUrl = Annotated[str, typer.Option("--nats-url", envvar="NATS_URL", rich_help_panel=PANEL, help="NATS server")]
Prefix = Annotated[str, typer.Option("--prefix", envvar="AGENTLEDGER_PREFIX", rich_help_panel=PANEL,
                                     help="subject prefix the engine serves")]
Stream = Annotated[str, typer.Option("--stream", envvar="AGENTLEDGER_STREAM", rich_help_panel=PANEL,
                                     help="event stream to read the log from")]
Timeout = Annotated[float, typer.Option("--timeout", min=0.1, rich_help_panel=PANEL,
                                        help="seconds to wait for NATS and the reply, connecting included")]
Creds = Annotated[str | None, typer.Option("--creds", envvar="NATS_CREDS", rich_help_panel=PANEL,
                                           help="NATS credentials (.creds); default: the admin's of `make run`, if there")]
Json = Annotated[bool, typer.Option("--json", rich_help_panel=PANEL, help="print raw JSON instead of a summary")]

DEFAULT_TENANT = "tnt_default"
DEFAULT_URL = "nats://127.0.0.1:4222"
DEFAULT_PREFIX = "ledger"
DEFAULT_STREAM = "LEDGER"
DEFAULT_TIMEOUT = 5.0
DEFAULT_CREDS = Path(".agentledger/auth/admin.creds")  # written by `agentledger serve` with an embedded server


def creds_file(given: str | None) -> str | None:
    """The credentials to connect with: the given file, else the local deployment's admin, else none."""
    if given:
        return given
    return str(DEFAULT_CREDS) if DEFAULT_CREDS.exists() else None


@dataclass(frozen=True)
class Target:
    nats_url: str
    prefix: str
    tenant: str
    timeout: float
    creds: str | None = None

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.prefix)


def _refused(target: Target, why: str) -> DomainError:
    """The broker said no (bad credentials, or a subject these credentials may not use): not retryable."""
    return DomainError(Forbidden(message=f"NATS at {target.nats_url} refused: {why}",
                                 details=ForbiddenDetails(principal="unknown", role="unknown", tenant=target.tenant)))


async def connect(target: Target, on_closed: Callable[[], None] | None = None,
                  errors: list[BaseException] | None = None) -> Client:
    """A connection for one request; with `on_closed`, a long-lived one that rides out reconnects.

    `target.timeout` bounds the whole attempt: nats-py on its own retries a refused server for
    about two minutes before giving up, whatever its connect timeout says.
    """
    last: list[BaseException] = [] if errors is None else errors

    async def remember(e: Exception) -> None:  # nats-py reports each failed attempt here as well
        last.append(e)

    async def closed() -> None:
        if on_closed is not None:
            on_closed()

    try:
        creds = creds_file(target.creds)
        return await asyncio.wait_for(
            nats.connect(servers=[target.nats_url], connect_timeout=target.timeout,
                         allow_reconnect=on_closed is not None, error_cb=remember, closed_cb=closed,
                         **({"user_credentials": creds} if creds else {})),
            target.timeout)
    except Exception as e:  # nats-py raises several unrelated types for "could not connect"
        cause = last[-1] if last else e
        if isinstance(cause, nats.errors.AuthorizationError):
            raise _refused(target, f"{cause} (check --creds / NATS_CREDS)") from None
        raise DomainError(Unavailable(message=f"cannot reach NATS at {target.nats_url} within {target.timeout:g}s: "
                                              f"{str(cause) or type(cause).__name__}")) from None


async def request(target: Target, subject: str, body: bytes) -> bytes:
    """Send one request and return the reply's exact bytes; `target.timeout` bounds connecting and
    the reply together."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + target.timeout
    errors: list[BaseException] = []
    nc = await connect(target, errors=errors)
    try:
        msg = await nc.request(subject, body, timeout=max(deadline - loop.time(), 0.01))
    except nats.errors.NoRespondersError:
        raise DomainError(Unavailable(message=f"no engine answers on {subject} (check --nats-url and --prefix)")) from None
    except nats.errors.TimeoutError:
        denied = [e for e in errors if "permissions violation" in str(e).lower()]
        if denied:
            raise _refused(target, f"{denied[-1]} (these credentials are not for tenant {target.tenant}?)") from None
        raise DomainError(Unavailable(message=f"no reply on {subject} within {target.timeout:g}s")) from None
    finally:
        await nc.close()
    return msg.data
