"""The request pipeline: one command or query message in, exactly one reply out.

subject -> (tenant, name) -> the caller, from the broker (`auth.identity`) -> may its role send
this? -> is its tenant within its rates and quotas (`handlers.quotas`)? -> the command or query
service -> the encoded reply, never above the reply limit. Each step's failure is itself a reply,
so a requester never waits for a timeout; a handler that raises anyway is answered `internal` by
`handlers.responder`, which also shares its workers fairly among tenants (each request's lane is
its subject's tenant) and refuses a tenant over its share with `rate_limited`. A query whose
`min_position` the read models have not reached waits for it holding no worker (`Later`).

The effect handler's commands come on a subject of their own (`Subjects.effects_all`), which only
its identity may publish on (`auth.permissions.effects_grant`; the admin's grant denies it, no
tenant imports it): a request there is the effect handler's. Which role may send which command is
the permission table's (`may_send`, `may_ask`): `sandbox.report_outcome` on the ordinary command
subject is `forbidden` for every caller, and `sandbox.list_live` for every tenant's user.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

import msgspec
from nats.aio.msg import Msg

from agentledger.engine import codec
from agentledger.engine.decoding import too_large
from agentledger.engine.outcomes import unexpected
from agentledger.engine.subjects import Subjects
from agentledger.handlers.auth.identity import REQUEST_INFO, Caller, TenantDirectory, authorize, identify
from agentledger.handlers.auth.permissions import may_ask, may_send
from agentledger.handlers.fairness import Shares
from agentledger.handlers.observability import tracing
from agentledger.handlers.responder import Later, Refusal, Responder, arrived, header_bytes
from agentledger.schemas.commands import MAX_REQUEST_BYTES
from agentledger.schemas.errors import (
    Error,
    Forbidden,
    ForbiddenDetails,
    InvalidCommand,
    InvalidCommandDetails,
    PathError,
    RateLimited,
    RateLimitedDetails,
    Unavailable,
)
from agentledger.schemas.events import Principal
from agentledger.schemas.replies import CommandReply, QueryReply

log = logging.getLogger("agentledger")
_encode = msgspec.json.Encoder().encode

Kind = Literal["command", "query"]
EFFECTS = Principal(id="effects", role="effects")  # whoever sent a request on the effect handler's own subject
CommandHandler = Callable[[str, str, bytes, Principal, float], Awaitable[CommandReply[Any]]]
"""(tenant, name, body, principal, arrival time): the command service's `execute`."""
QueryHandler = Callable[[str, str, bytes], Awaitable[QueryReply]]
QueryWait = Callable[[bytes], Callable[[], Awaitable[object]] | None]
"""The wait a query body asks for before it can be answered (`min_position`), or None."""
DEPLOYMENT_LANE = "{}/deployment"  # the deployment's own requests for a tenant: a lane of their own


class TenantLimits(Protocol):
    async def refusal(self, tenant: str, kind: Kind) -> Error | None:
        """Why a tenant's own request is refused now (its rate or quota), or None."""


def _too_large(size: int) -> InvalidCommand:
    message = f"the reply would be {size} bytes, above the limit of {codec.MAX_REPLY_BYTES}; page or narrow the request"
    return InvalidCommand(message=message, details=InvalidCommandDetails(errors=[PathError("$", message)]))


def _bad_tenant(error: ValueError) -> InvalidCommand:
    return InvalidCommand(message=str(error), details=InvalidCommandDetails(errors=[PathError("subject", str(error))]))


def _not_yours(principal: str, role: Any, tenant: str, message: str) -> Forbidden:
    return Forbidden(message=message, details=ForbiddenDetails(principal=principal, role=role, tenant=tenant))


class RequestPipeline:
    def __init__(self, subjects: Subjects, commands: CommandHandler, queries: QueryHandler,
                 directory: TenantDirectory | None, limits: TenantLimits | None = None,
                 query_wait: QueryWait | None = None) -> None:
        self.subjects = subjects
        self.commands, self.queries = commands, queries
        self.directory = directory
        self.limits = limits
        self.query_wait = query_wait

    async def serve(self, responder: Responder, queue_group: str, query_shares: Shares | None = None) -> None:
        """Answer `<prefix>.cmd.<tenant>.<command>` and `<prefix>.qry.<tenant>.<query>` in the queue group
        (`query_shares`: how the query workers are shared, if not as the command workers are)."""
        await responder.serve(self.subjects.commands_all, queue_group, self.command, self.failed_command,
                              lane_of=self.lane_of, refuse=self.refuse_command)
        await responder.serve(self.subjects.queries_all, queue_group, self.query, self.failed_query,
                              lane_of=self.lane_of, refuse=self.refuse_query, shares=query_shares)
        await responder.serve(self.subjects.effects_all, queue_group, self.effects_command, self.failed_command,
                              lane_of=self.lane_of, refuse=self.refuse_command)

    def lane_of(self, msg: Msg) -> str:
        """A request's share of the workers is its tenant's: the subject's tenant token, which for a
        tenant's user is its own account's (the broker routes nothing else). The deployment's own
        requests for a tenant (no `Nats-Request-Info`: the effect handler's outcomes, say) have a
        lane of their own, so a tenant's burst does not hold them back."""
        try:
            tenant, _ = self.subjects.parse_request(msg.subject)
        except (ValueError, IndexError):
            return ""
        return tenant if REQUEST_INFO in (msg.headers or {}) else DEPLOYMENT_LANE.format(tenant)

    async def command(self, msg: Msg) -> bytes | Later:
        return await self._handle("command", msg, CommandReply)

    async def query(self, msg: Msg) -> bytes | Later:
        return await self._handle("query", msg, QueryReply)

    def refuse_command(self, subject: str, refusal: Refusal) -> bytes:
        return _encode(CommandReply(ok=False, error=_rate_limited(refusal)))

    def refuse_query(self, subject: str, refusal: Refusal) -> bytes:
        return _encode(QueryReply(ok=False, error=_rate_limited(refusal)))

    async def effects_command(self, msg: Msg) -> bytes | Later:
        """A command on the effect handler's own subject: the broker let only its identity publish it."""
        return await self._handle("command", msg, CommandReply, effects=True)

    def failed_command(self, subject: str) -> bytes:
        return _encode(CommandReply(ok=False, error=unexpected(log, subject)))

    def failed_query(self, subject: str) -> bytes:
        return _encode(QueryReply(ok=False, error=unexpected(log, subject)))

    async def _caller(self, headers: dict[str, str] | None, tenant: str, kind: Kind, name: str) -> Caller | Error:
        """The authenticated caller, or the error to reply with (tenant from the broker, role allowed)."""
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
        return who

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

    async def _refusal(self, caller: Caller, tenant: str, kind: Kind) -> Error | None:
        """A tenant's own request over its rate or quota is refused; the deployment's never are."""
        if self.limits is None or caller.tenant is None:
            return None
        try:
            return await self.limits.refusal(tenant, kind)
        except Exception as e:  # the quota or the tenant's event count could not be read: the caller may retry
            log.warning("quota of %s: %s: %s", tenant, type(e).__name__, e)
            return Unavailable(message="cannot check the tenant's quota now; retry")

    async def _handle(self, kind: Kind, msg: Msg, reply_type: type[CommandReply[Any]] | type[QueryReply],
                      effects: bool = False, parked: bool = False) -> bytes | Later:
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
            if isinstance(who, Error):
                return _encode(reply_type(ok=False, error=who))
            if not parked and isinstance(who, Caller):  # a request back from waiting was counted when it came
                refused = await self._refusal(who, tenant, kind)
                if refused is not None:
                    tracing.outcome(span, type(refused).__struct_config__.tag)
                    return _encode(reply_type(ok=False, error=refused))
            reply: CommandReply[Any] | QueryReply
            if kind == "command":
                principal = who.principal if isinstance(who, Caller) else who
                reply = await self.commands(tenant, name, msg.data, principal, arrived())
            else:
                wait = None if parked or self.query_wait is None else self.query_wait(msg.data)
                if wait is not None:
                    tracing.outcome(span, "waiting")
                    return Later(wait, lambda: self._answer_after_wait(kind, msg, reply_type))
                reply = await self.queries(tenant, name, msg.data)
            tracing.outcome(span, "ok" if reply.error is None else type(reply.error).__struct_config__.tag)
            data = _encode(reply)
        if len(data) > codec.MAX_REPLY_BYTES:  # never hand NATS a message it refuses
            return _encode(reply_type(ok=False, error=_too_large(len(data))))
        return data

    async def _answer_after_wait(self, kind: Kind, msg: Msg,
                                 reply_type: type[CommandReply[Any]] | type[QueryReply]) -> bytes:
        data = await self._handle(kind, msg, reply_type, parked=True)
        assert isinstance(data, bytes)
        return data


_WHAT = {"requests_waiting": "requests waiting for a worker", "bytes_waiting": "bytes of requests waiting for a worker",
         "waits_parked": "queries waiting for min_position"}


def _rate_limited(refusal: Refusal) -> RateLimited:
    tenant = refusal.lane.partition("/")[0]
    return RateLimited(message=f"tenant {tenant} has {refusal.allowed} {_WHAT[refusal.limit]} on this engine, its "
                               f"share; retry in {refusal.retry_after:g} s",
                       details=RateLimitedDetails(tenant=tenant, limit=refusal.limit,  # type: ignore[arg-type]
                                                  allowed=refusal.allowed, retry_after=refusal.retry_after))
