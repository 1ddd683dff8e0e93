"""The request pipeline: one command or query message in, exactly one reply out.

subject -> (tenant, name) -> the caller, from the broker (`auth.identity`) -> may its role send
this? -> the command or query service -> the encoded reply, never above the reply limit. Each
step's failure is itself a reply, so a requester never waits for a timeout; a handler that raises
anyway is answered `internal` by `handlers.responder`.

The effect handler's commands come on a subject of their own (`Subjects.effects_all`), which only
its identity may publish on (`auth.permissions.effects_grant`; the admin's grant denies it, no
tenant imports it): a request there is the effect handler's. Which role may send which command is
the permission table's (`may_send`, `may_ask`): `sandbox.report_outcome` on the ordinary command
subject is `forbidden` for every caller, and `sandbox.list_live` for every tenant's user.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
from nats.aio.msg import Msg

from agentledger.engine import codec
from agentledger.engine.decoding import too_large
from agentledger.engine.outcomes import unexpected
from agentledger.engine.subjects import Subjects
from agentledger.handlers.auth.identity import REQUEST_INFO, TenantDirectory, authorize, identify
from agentledger.handlers.auth.permissions import may_ask, may_send
from agentledger.handlers.observability import tracing
from agentledger.handlers.responder import Responder, header_bytes
from agentledger.schemas.commands import MAX_REQUEST_BYTES
from agentledger.schemas.errors import (
    Error,
    Forbidden,
    ForbiddenDetails,
    InvalidCommand,
    InvalidCommandDetails,
    PathError,
    Unavailable,
)
from agentledger.schemas.events import Principal
from agentledger.schemas.replies import CommandReply, QueryReply

log = logging.getLogger("agentledger")
_encode = msgspec.json.Encoder().encode

Kind = Literal["command", "query"]
EFFECTS = Principal(id="effects", role="effects")  # whoever sent a request on the effect handler's own subject
CommandHandler = Callable[[str, str, bytes, Principal], Awaitable[CommandReply[Any]]]
QueryHandler = Callable[[str, str, bytes], Awaitable[QueryReply]]


def _too_large(size: int) -> InvalidCommand:
    message = f"the reply would be {size} bytes, above the limit of {codec.MAX_REPLY_BYTES}; page or narrow the request"
    return InvalidCommand(message=message, details=InvalidCommandDetails(errors=[PathError("$", message)]))


def _bad_tenant(error: ValueError) -> InvalidCommand:
    return InvalidCommand(message=str(error), details=InvalidCommandDetails(errors=[PathError("subject", str(error))]))


def _not_yours(principal: str, role: Any, tenant: str, message: str) -> Forbidden:
    return Forbidden(message=message, details=ForbiddenDetails(principal=principal, role=role, tenant=tenant))


class RequestPipeline:
    def __init__(self, subjects: Subjects, commands: CommandHandler, queries: QueryHandler,
                 directory: TenantDirectory | None) -> None:
        self.subjects = subjects
        self.commands, self.queries = commands, queries
        self.directory = directory

    async def serve(self, responder: Responder, queue_group: str) -> None:
        """Answer `<prefix>.cmd.<tenant>.<command>` and `<prefix>.qry.<tenant>.<query>` in the queue group."""
        await responder.serve(self.subjects.commands_all, queue_group, self.command, self.failed_command)
        await responder.serve(self.subjects.queries_all, queue_group, self.query, self.failed_query)
        await responder.serve(self.subjects.effects_all, queue_group, self.effects_command, self.failed_command)

    async def command(self, msg: Msg) -> bytes:
        return await self._handle("command", msg, CommandReply)

    async def query(self, msg: Msg) -> bytes:
        return await self._handle("query", msg, QueryReply)

    async def effects_command(self, msg: Msg) -> bytes:
        """A command on the effect handler's own subject: the broker let only its identity publish it."""
        return await self._handle("command", msg, CommandReply, effects=True)

    def failed_command(self, subject: str) -> bytes:
        return _encode(CommandReply(ok=False, error=unexpected(log, subject)))

    def failed_query(self, subject: str) -> bytes:
        return _encode(QueryReply(ok=False, error=unexpected(log, subject)))

    async def _caller(self, headers: dict[str, str] | None, tenant: str, kind: Kind, name: str) -> Principal | Error:
        """The authenticated principal, or the error to reply with (tenant from the broker, role allowed)."""
        try:
            who = await identify(headers, self.directory)
        except Exception as e:  # the tenant directory could not be read: the caller may retry
            log.warning("identify: %s", e)
            return Unavailable(message="cannot check the caller's tenant now; retry")
        refused = authorize(who, tenant, kind)
        if refused is not None:
            return refused
        assert who is not None
        p = who.principal
        if kind == "command" and not may_send(p.role, name):
            return _not_yours(p.id, p.role, tenant, f"role {p.role} may not send {name}: only the effect handler "
                                                    "sends it, on its own subject")
        if kind == "query" and not may_ask(p.role, name):
            return _not_yours(p.id, p.role, tenant, f"role {p.role} may not ask {name}: the deployment's only")
        return p

    @staticmethod
    def _effects_caller(headers: dict[str, str] | None, tenant: str, name: str) -> Principal | Error:
        """On the effect handler's subject: the effect handler, for the commands the table gives it.
        A request that came through an account import carries the broker's `Nats-Request-Info`; none
        is routed here, and one that were would not be the effect handler's."""
        if headers is not None and REQUEST_INFO in headers:
            return _not_yours("unknown", "unknown", tenant, "a request through an account import is not the effect "
                                                            "handler's")
        if not may_send(EFFECTS.role, name):
            return _not_yours(EFFECTS.id, EFFECTS.role, tenant, f"the effect handler may not send {name}")
        return EFFECTS

    async def _handle(self, kind: Kind, msg: Msg, reply_type: type[CommandReply[Any]] | type[QueryReply],
                      effects: bool = False) -> bytes:
        try:
            tenant, name = self.subjects.parse_request(msg.subject)
        except ValueError as e:
            return _encode(reply_type(ok=False, error=_bad_tenant(e)))
        if (extra := header_bytes(msg.headers)) and len(msg.data) + extra > MAX_REQUEST_BYTES:  # headers count
            error = too_large(f"{kind} with its headers", len(msg.data) + extra, MAX_REQUEST_BYTES).error
            return _encode(reply_type(ok=False, error=error))
        with tracing.request_span(kind, name, tenant, msg.headers, msg.subject) as span:
            who = self._effects_caller(msg.headers, tenant, name) if effects else \
                await self._caller(msg.headers, tenant, kind, name)
            if not isinstance(who, Principal):
                return _encode(reply_type(ok=False, error=who))
            reply: CommandReply[Any] | QueryReply
            if kind == "command":
                reply = await self.commands(tenant, name, msg.data, who)
            else:
                reply = await self.queries(tenant, name, msg.data)
            tracing.outcome(span, "ok" if reply.error is None else type(reply.error).__struct_config__.tag)
            data = _encode(reply)
        if len(data) > codec.MAX_REPLY_BYTES:  # never hand NATS a message it refuses
            return _encode(reply_type(ok=False, error=_too_large(len(data))))
        return data
