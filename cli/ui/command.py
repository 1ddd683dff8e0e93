"""The `agentledger ui` command; the web stack is imported only when it runs."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from agentledger.cli import transport
from agentledger.cli.transport import Creds, NatsUrl, Prefix, Target, Tenant, Timeout


def ui(
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="HTTP port (0: any free port)")] = 8480,
    host: Annotated[str, typer.Option("--host", help="address to listen on; anyone who reaches it reads what "
                                                      "--creds may read")] = "127.0.0.1",
    allow_host: Annotated[list[str] | None, typer.Option(
        "--allow-host", metavar="NAME",
        help="a name (or address) the page may be reached by besides loopback ones; repeat for more")] = None,
    tenant: Tenant = transport.DEFAULT_TENANT,
    nats_url: NatsUrl = transport.DEFAULT_URL,
    prefix: Prefix = transport.DEFAULT_PREFIX,
    creds: Creds = None,
    timeout: Timeout = transport.DEFAULT_TIMEOUT,
) -> None:
    """Serve the web timeline of a tenant's threads: sessions, delegation, sandboxes, and any
    past position replayed from the log. It reads only through the engine's queries."""
    from agentledger.cli import output
    from agentledger.cli.query_client import QueryClient
    from agentledger.cli.ui.server import serve
    from agentledger.client.errors import LedgerError
    from agentledger.schemas.errors import DomainError

    def ready(bound: int) -> None:
        output.err.print(f"timeline of {tenant} at http://{host}:{bound}/ (Ctrl-C stops it)", markup=False)

    async def run() -> None:
        async with QueryClient(Target(nats_url, prefix, tenant, timeout, creds)) as client:
            await serve(client, host, port, ready, allow_hosts=allow_host or ())

    try:
        asyncio.run(run())
    except (DomainError, LedgerError) as e:
        transport.fail(e)
    except KeyboardInterrupt:
        pass
