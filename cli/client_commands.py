"""One subcommand per protocol command and query, generated from the request Structs, grouped by
the name's first part (`session.request_input` -> `agentledger session request-input`), plus
`events tail` and `events export`, which read the log.

A group is built when it is asked for (`agentledger session ...` builds `session` only). A
request is checked with the Python client's own validation before it is sent, so a bad value is
refused locally with the same `invalid_command` error the engine would give, in words.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import msgspec
import typer

from agentledger.cli import transport
from agentledger.cli.options import FieldOption, Spec, build_body, field_options
from agentledger.schemas.commands import COMMANDS, Command
from agentledger.schemas.queries import QUERIES, Query
from agentledger.schemas.replies import CommandReply, QueryReply

COMMAND_SPEC = Spec(common=frozenset({"actor", "command_id", "correlation_id", "causation_id"}),
                    env_defaults={"actor": ("AGENTLEDGER_ACTOR", "usr_cli")}, unprefixed=frozenset({"config", "options"}))
QUERY_SPEC = Spec(common=frozenset({"min_position"}))
_P = inspect.Parameter


def _connection_params() -> list[inspect.Parameter]:
    kw = _P.KEYWORD_ONLY
    return [
        _P("tenant", kw, annotation=transport.Tenant, default=transport.DEFAULT_TENANT),
        _P("nats_url", kw, annotation=transport.NatsUrl, default=transport.DEFAULT_URL),
        _P("prefix", kw, annotation=transport.Prefix, default=transport.DEFAULT_PREFIX),
        _P("timeout", kw, annotation=transport.Timeout, default=transport.DEFAULT_TIMEOUT),
        _P("creds", kw, annotation=transport.Creds, default=None),
        _P("json_", kw, annotation=transport.Json, default=False),
    ]


def _requests() -> list[tuple[str, str, type[Command] | type[Query], Spec]]:
    return [*(("command", n, c, COMMAND_SPEC) for n, c in COMMANDS.items()),
            *(("query", n, q, QUERY_SPEC) for n, q in QUERIES.items())]


def group_names() -> list[str]:
    """`project`, `thread`, `session`, ...: the first part of every command and query name."""
    return list(dict.fromkeys(name.partition(".")[0] for _, name, _, _ in _requests()))


def group(head: str) -> typer.Typer | None:
    """The subcommands of one group, or None when no command or query starts with `head`."""
    members = [(kind, name, struct, spec) for kind, name, struct, spec in _requests() if name.partition(".")[0] == head]
    if not members:
        return None
    built = typer.Typer(no_args_is_help=True)
    for kind, name, struct, spec in members:
        built.command(name.partition(".")[2].replace("_", "-"))(_make(kind, name, struct, spec))
    if head == "events":
        from agentledger.cli import log_commands

        built.command("tail")(log_commands.tail)
        built.command("export")(log_commands.export)
    built.info.help = ", ".join(str(c.name) for c in built.registered_commands) + "."
    return built


def _send(kind: str, name: str, struct: type[msgspec.Struct], options: list[FieldOption],
          values: dict[str, Any]) -> None:
    """Check, send, print; exit with `output.exit_code` of the reply."""
    from agentledger.cli import output
    from agentledger.client.errors import LedgerError
    from agentledger.client.validation import check

    target = transport.Target(values.pop("nats_url"), values.pop("prefix"), values.pop("tenant"), values.pop("timeout"),
                              values.pop("creds"))
    as_json = values.pop("json_")
    reply_type: type[CommandReply[Any]] | type[QueryReply] = CommandReply if kind == "command" else QueryReply
    subject = (target.subjects.command if kind == "command" else target.subjects.query)(target.tenant, name)
    try:
        request = check(struct, build_body(options, values))
        data = asyncio.run(transport.request(target, subject, msgspec.json.encode(request)))
    except LedgerError as e:
        if e.error is None:  # the client's own: no credentials, a missing file, refused credentials
            transport.fail(e)
        data = msgspec.json.encode(reply_type(ok=False, error=e.error))
    try:
        reply = msgspec.json.decode(data, type=reply_type)
    except msgspec.ValidationError:  # a reply this CLI does not know how to read: show it as it is
        output.raw(data)
        loose = msgspec.json.decode(data)
        retryable = isinstance(loose.get("error"), dict) and loose["error"].get("retryable") is True
        raise typer.Exit(output.EXIT_OK if loose.get("ok") else
                         output.EXIT_RETRYABLE if retryable else output.EXIT_REFUSED) from None
    if as_json:
        output.raw(data)
    elif isinstance(reply, CommandReply):
        output.command_reply(reply)
    else:
        output.query_reply(name, reply)
    if not reply.ok:
        raise typer.Exit(output.exit_code(reply.error))


def _make(kind: str, name: str, struct: type[msgspec.Struct], spec: Spec) -> Callable[..., None]:
    options = field_options(struct, spec)
    params = [o.parameter for o in options] + _connection_params()
    clash = {o.param for o in options} & {p.name for p in _connection_params()}
    assert not clash, f"{name}: fields {clash} clash with connection options"

    def run(**values: Any) -> None:
        _send(kind, name, struct, options, values)

    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run.__doc__ = (struct.__doc__ or "").strip().split("\n")[0]  # the contract's own help line
    return run

