"""State of one consistency boundary, rebuilt by applying its events in log order."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, ClassVar

import msgspec
from eventsourcing.dcb.domain import Selector, Slice

from agentledger.schemas.events import Envelope

COMMAND_WINDOW = 1000  # command ids remembered per boundary: those of its last 1,000 events


class CommandRecord(msgspec.Struct, frozen=True):
    """An accepted command, remembered so that a repeated command_id answers from here (the event
    itself is read back from the log by position: keeping every envelope would cost memory per event)."""

    command: str
    position: int


class BoundaryModel(Slice[Any]):
    """A perspective over exactly one subject filter.

    `position` is the stream sequence of the last event applied from this boundary; it is the
    expected last subject sequence of the next append. Events are applied with `apply`, which
    ignores anything at or below `position`, so the same event arriving from the engine's own
    append, a refresh read and the live projection is applied exactly once.
    """

    ID_PREFIX: ClassVar[str]  # the id prefix of the boundary's entity (`thd_`)
    ID_FIELD: ClassVar[str]  # the field of its events that names that entity (`thread_id`)
    # The model's state: what snapshots hold (engine/snapshots.py), declared here and in each model.
    tenant_id: str
    boundary: str
    position: int
    exists: bool
    commands: dict[str, CommandRecord]

    def __init__(self, tenant_id: str, boundary: str) -> None:
        self.tenant_id = tenant_id
        self.boundary = boundary
        self.position = 0
        self.exists = False  # set by the boundary's creating event
        self.commands: dict[str, CommandRecord] = {}  # in log order
        self._applying_position = 0
        # Cache bookkeeping (engine/repository.py), not state: `ready` once loaded from the log;
        # `loading` while a load runs, `live_buffer` holding what the live follower saw meanwhile.
        self.ready = False
        self.since_snapshot = 0
        self.loading: asyncio.Future[None] | None = None
        self.live_buffer: list[Any] | None = None

    def consistency_boundary(self) -> Selector:
        """What eventsourcing's `Slice` requires every perspective to name: here, the one subject
        filter the model is built from (the engine's appends carry the same string)."""
        return Selector(tags=[self.boundary])

    def apply(self, envelope: Envelope, position: int) -> bool:
        if position <= self.position:
            return False
        self._applying_position = position
        envelope.data.mutate(self)
        self.commands[envelope.command_id] = CommandRecord(sys.intern(envelope.command), position)
        if len(self.commands) > COMMAND_WINDOW:
            del self.commands[next(iter(self.commands))]
        self.position = position
        self.since_snapshot += 1
        return True
