"""One subcommand per protocol command and query, generated from the request Structs, grouped by
the name's first part (`session.request_input` -> `agentledger session request-input`), plus
`events tail` and `replay`, which read the log directly.

A request is validated with the engine's own decoder before it is sent, so a bad value is
refused locally with the same `invalid_command` error the engine would give.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import msgspec
import typer

from agentledger.cli import log_commands, output, transport, worker_commands
from agentledger.cli.main import app
from agentledger.cli.options import FieldOption, Spec, build_body, field_options
from agentledger.cli.ui import command as ui_command
from agentledger.engine.decoding import decode_request, decoders
from agentledger.schemas.commands import COMMANDS, Command
from agentledger.schemas.errors import DomainError
from agentledger.schemas.queries import QUERIES, Query
from agentledger.schemas.replies import CommandReply, QueryReply

GROUP_HELP = {
    "project.create": "Create a project.",
    "thread.create": "Create a thread in a project.",
    "thread.archive": "Archive a thread (refused while a session is busy).",
    "thread.unarchive": "Reopen an archived thread.",
    "thread.delete": "Delete a thread (refused while a session is busy).",
    "session.create": "Create an idle session in a thread.",
    "session.start": "Start a session.",
    "session.request_input": "Pause a session for human input.",
    "session.provide_input": "Resume a session waiting for input.",
    "session.complete": "Complete a session with its summary.",
    "session.cancel": "Interrupt a session; it returns to idle.",
    "session.fail": "Mark a session failed.",
    "session.archive": "Archive a session.",
    "session.restore": "Restore an archived session.",
    "session.spawn": "Spawn a child session for an agent.",
    "handoff.single": "Hand a session over to one actor.",
    "handoff.broadcast": "Broadcast a session to several actors and wait for all of them.",
    "sandbox.create": "Create a sandbox.",
    "sandbox.fork": "Fork a sandbox into a new one.",
    "sandbox.pause": "Pause a sandbox.",
    "sandbox.resume": "Resume a paused sandbox.",
    "sandbox.destroy": "Destroy a sandbox.",
    "thread.get": "Show a thread and its sessions.",
    "thread.list": "List a project's threads (without --project-id, the tenant's), oldest first, a page at a time.",
    "session.get": "Show one session.",
    "session.tree": "Show the delegation tree under a session.",
    "events.read": "Read one page of the event log.",
    "sandbox.get": "Show one sandbox.",
    "quarantine.list": "List log messages skipped because they failed admission.",
}
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


_groups: dict[str, typer.Typer] = {}


def group(name: str) -> typer.Typer:
    if name not in _groups:
        _groups[name] = typer.Typer(no_args_is_help=True, help=GROUP_HELP.get(name))
        app.add_typer(_groups[name], name=name)
    return _groups[name]


def _send(kind: str, name: str, struct: type[msgspec.Struct], options: list[FieldOption],
          values: dict[str, Any]) -> None:
    """Validate, send, print; exit with `output.exit_code` of the reply."""
    target = transport.Target(values.pop("nats_url"), values.pop("prefix"), values.pop("tenant"), values.pop("timeout"),
                              values.pop("creds"))
    as_json = values.pop("json_")
    reply_type: type[CommandReply] | type[QueryReply] = CommandReply if kind == "command" else QueryReply
    subject = (target.subjects.command if kind == "command" else target.subjects.query)(target.tenant, name)
    try:
        request = decode_request(decoders({name: struct}), kind, name, msgspec.json.encode(build_body(options, values)))
        data = asyncio.run(transport.request(target, subject, msgspec.json.encode(request)))
    except DomainError as e:
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


def register() -> None:
    requests: list[tuple[str, str, type[Command] | type[Query], Spec]] = [
        *(("command", n, c, COMMAND_SPEC) for n, c in COMMANDS.items()),
        *(("query", n, q, QUERY_SPEC) for n, q in QUERIES.items()),
    ]
    for kind, name, struct, spec in requests:
        head, _, tail = name.partition(".")
        group(head).command(tail.replace("_", "-"))(_make(kind, name, struct, spec))
    group("events").command("tail")(log_commands.tail)
    group("events").command("export")(log_commands.export)
    group("workers").command("parked")(worker_commands.parked)
    app.command("replay")(log_commands.replay)
    app.command("ui")(ui_command.ui)


register()
