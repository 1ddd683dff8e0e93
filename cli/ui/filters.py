"""Which events of a history the timeline shows: filters by session, type, actor and
correlation, and a text search, all of them together (pure; the scan is in `pages.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from agentledger.schemas.events import StoredEvent


class EventFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Empty fields match everything.

    - `session`: the event names the session in any of its `…session_id` fields (its own, a
      parent, a root, a handoff's source or recipients, a sandbox's owner, a shutdown action) or
      as the session a sandbox is held for, or it is an event of a sandbox in `sandboxes` (the
      one the session was bound to);
    - `type`: the event type, or a family of them (`sandbox` matches `sandbox.created`, …);
    - `actor`: the id of the actor the command asserted or of the principal who sent it;
    - `correlation`: the correlation id;
    - `text`: a case-insensitive substring of any text of the event (ids, titles, prompts,
      summaries, reasons, errors, times)."""

    session: str = ""
    type: str = ""
    actor: str = ""
    correlation: str = ""
    text: str = ""
    sandboxes: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        return any((self.session, self.type, self.actor, self.correlation, self.text))

    def matches(self, event: StoredEvent) -> bool:
        if self.type and event.type != self.type and not event.type.startswith(self.type.rstrip(".") + "."):
            return False
        if self.correlation and event.correlation_id != self.correlation:
            return False
        if self.actor and self.actor not in (event.actor.id, event.principal.id if event.principal else None):
            return False
        if self.session and getattr(event.data, "sandbox_id", None) not in self.sandboxes \
                and not any(k.endswith("session_id") or k == "hold_for"
                            for k, v in _fields(msgspec.to_builtins(event.data)) if v == self.session):
            return False
        if self.text:
            needle = self.text.casefold()
            return any(needle in str(v).casefold() for _, v in _fields(msgspec.to_builtins(event)))
        return True


def _fields(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """Every scalar in a decoded event, with the name of the field that holds it."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _fields(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _fields(v, key)
    elif value is not None:
        yield key, value
