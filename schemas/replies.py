"""Reply envelopes for commands and queries. Every request gets exactly one of these."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

import msgspec

from agentledger.schemas.errors import AnyError
from agentledger.schemas.events import StoredEvent

R = TypeVar("R")  # unparametrised: the result decodes as plain JSON


class CommandReply(msgspec.Struct, Generic[R], frozen=True, kw_only=True, omit_defaults=True):
    """`{"ok": true, command_id, position, events, result}` or `{"ok": false, command_id, error}`.

    `result` is the command's own `RESULT` type (`CommandReply[SessionSpawnResult]` to decode one)."""

    ok: bool
    command_id: str | None = None
    position: int | None = None
    events: list[StoredEvent] | None = None
    result: R | None = None
    error: AnyError | None = None


class QueryReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`{"ok": true, position, result}` or `{"ok": false, error}`; `position` is the read model's."""

    ok: bool
    position: int | None = None
    result: Any = None
    error: AnyError | None = None


# -- the same replies as the wire shows them: one type per value of `ok` -----------------------
# The two envelopes above are what the engine builds; these describe each case exactly, so the
# published schema (and the clients generated from it) can narrow a reply on `ok`.
class CommandRefused(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Nothing was appended. `command_id` is absent when the body could not be read."""

    ok: Literal[False]
    command_id: str | None = None
    error: AnyError


class QueryRefused(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ok: Literal[False]
    error: AnyError


def type_name(request: str) -> str:
    """`session.request_input` -> `SessionRequestInput`: the stem of a request's named types."""
    return "".join(part.capitalize() for part in request.replace("_", ".").split("."))


def query_answer(name: str, result: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """`{"ok": true, "position", "result"}` for one query, with its result typed: e.g. `ThreadGetAnswer`."""
    return msgspec.defstruct(type_name(name) + "Answer", [("ok", Literal[True]), ("position", int), ("result", result)],
                             frozen=True, kw_only=True, forbid_unknown_fields=True, module=__name__)


def command_accepted(name: str, result: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """`{"ok": true, command_id, position, events, result}` for one command, its result typed: e.g.
    `SessionSpawnAccepted`. `events` holds the command's one event, or nothing for a no-op."""
    return msgspec.defstruct(type_name(name) + "Accepted", [("ok", Literal[True]), ("command_id", str),
                                                            ("position", int), ("events", list[StoredEvent]),
                                                            ("result", result)],
                             frozen=True, kw_only=True, forbid_unknown_fields=True, module=__name__)
