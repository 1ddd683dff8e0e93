"""Reply envelopes for commands and queries. Every request gets exactly one of these."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from agentledger.schemas.errors import AnyError
from agentledger.schemas.events import StoredEvent
from agentledger.schemas.ids import EdgeId, HandoffId, ProjectId, SandboxId, SessionId, SummaryId, ThreadId


class CommandResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a command returns; only the fields that apply to the command are present."""

    project_id: ProjectId | None = None
    thread_id: ThreadId | None = None
    session_id: SessionId | None = None
    status: str | None = None
    summary_id: SummaryId | None = None
    edge_id: EdgeId | None = None
    depth: int | None = None
    handoff_id: HandoffId | None = None
    session_ids: list[SessionId] | None | None = None
    owner_version: int | None = None
    sandbox_id: SandboxId | None = None


class CommandReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`{"ok": true, command_id, position, events, result}` or `{"ok": false, command_id, error}`."""

    ok: bool
    command_id: str | None = None
    position: int | None = None
    events: list[StoredEvent] | None = None
    result: CommandResult | None = None
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
class CommandAccepted(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The command was applied (`events` holds its one event) or was a repeat or a no-op (`events`
    holds the first outcome's event, or nothing)."""

    ok: Literal[True]
    command_id: str
    position: int
    events: list[StoredEvent]
    result: CommandResult


class CommandRefused(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Nothing was appended. `command_id` is absent when the body could not be read."""

    ok: Literal[False]
    command_id: str | None = None
    error: AnyError


class QueryRefused(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ok: Literal[False]
    error: AnyError


def query_answer(name: str, result: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """`{"ok": true, "position", "result"}` for one query, with its result typed: e.g. `ThreadGetAnswer`."""
    title = "".join(part.capitalize() for part in name.replace("_", ".").split(".")) + "Answer"
    return msgspec.defstruct(title, [("ok", Literal[True]), ("position", int), ("result", result)],
                             frozen=True, kw_only=True, forbid_unknown_fields=True, module=__name__)
