"""State of one consistency boundary, rebuilt by applying its events in log order."""

from __future__ import annotations

from typing import Any

import msgspec
from eventsourcing.dcb.domain import Selector, Slice

from schemas.events import Envelope


class CommandRecord(msgspec.Struct, frozen=True):
    """An accepted command, remembered so that a repeated command_id answers from here."""

    command: str
    envelope: Envelope
    position: int


class BoundaryModel(Slice[Any]):
    """A perspective over exactly one subject filter.

    `position` is the stream sequence of the last event applied from this boundary; it is the
    expected last subject sequence of the next append. Events are applied with `apply`, which
    ignores anything at or below `position`, so the same event arriving from the engine's own
    append, a refresh read and the live projection is applied exactly once.
    """

    def __init__(self, tenant_id: str, boundary: str) -> None:
        self.tenant_id = tenant_id
        self.boundary = boundary
        self.position = 0
        self.exists = False  # set by the boundary's creating event
        self.commands: dict[str, CommandRecord] = {}
        self._applying_position = 0

    def consistency_boundary(self) -> Selector:
        return Selector(tags=[self.boundary])

    def apply(self, envelope: Envelope, position: int) -> bool:
        if position <= self.position:
            return False
        self._applying_position = position
        envelope.data.mutate(self)
        self.commands[envelope.command_id] = CommandRecord(envelope.command, envelope, position)
        self.position = position
        return True
