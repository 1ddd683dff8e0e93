"""Reply envelopes for commands and queries. Every request gets exactly one of these."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.errors import AnyError
from schemas.events import StoredEvent


class CommandResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a command returns; only the fields that apply to the command are present."""

    project_id: str | None = None
    thread_id: str | None = None
    session_id: str | None = None
    status: str | None = None
    summary_id: str | None = None
    edge_id: str | None = None
    depth: int | None = None
    handoff_id: str | None = None
    session_ids: list[str] | None = None
    owner_version: int | None = None
    sandbox_id: str | None = None


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
