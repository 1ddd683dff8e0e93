"""Which session asked what: LangGraph's pending interrupts read from a state snapshot
(`graph.aget_state(config, subgraphs=True)`), each placed in the namespace of the task that
called `interrupt()`. Pure: no I/O.

An interrupt raised in a subgraph is recorded by every enclosing task on its way up, with the same
id, so it is placed at the deepest snapshot that still holds it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.types import Interrupt, StateSnapshot

MAX_PROMPT = 4000  # the contract's limit on `session.request_input`'s prompt
_INTERRUPT_ID = re.compile(r"[0-9a-f]{32}")  # how LangGraph tells a resume map from a resume value


@dataclass(frozen=True)
class Asked:
    """The interrupts raised in one namespace, and the checkpoint they wait at."""

    ns: str
    checkpoint_id: str | None
    interrupts: tuple[Interrupt, ...]


def _ns(snapshot: StateSnapshot) -> tuple[str, str | None]:
    conf = snapshot.config.get("configurable", {})
    checkpoint_id = conf.get("checkpoint_id")
    return str(conf.get("checkpoint_ns") or ""), None if checkpoint_id is None else str(checkpoint_id)


def origins(snapshot: StateSnapshot) -> list[Asked]:
    """Every pending interrupt, at the namespace where it was raised (root first, then deeper)."""
    found: dict[str, list[Interrupt]] = {}
    where: dict[str, str | None] = {}

    def walk(snap: StateSnapshot) -> None:
        ns, checkpoint_id = _ns(snap)
        for task in snap.tasks:
            sub = task.state if isinstance(task.state, StateSnapshot) else None
            below = {i.id for t in sub.tasks for i in t.interrupts} if sub is not None else set()
            for interrupt in task.interrupts:
                if interrupt.id not in below:
                    found.setdefault(ns, []).append(interrupt)
                    where[ns] = checkpoint_id
            if sub is not None:
                walk(sub)

    walk(snapshot)
    return [Asked(ns, where[ns], tuple(found[ns])) for ns in sorted(found, key=lambda n: (n.count("|"), n))]


def answered(resume: Any, pending: Iterable[str]) -> set[str]:
    """The interrupts a `Command(resume=...)` answers, as LangGraph reads it: a dict keyed by
    interrupt ids answers those; any other value answers the one pending interrupt (with more than
    one pending, LangGraph refuses it, and nothing is answered)."""
    waiting = set(pending)
    if isinstance(resume, dict) and all(isinstance(k, str) and _INTERRUPT_ID.fullmatch(k) for k in resume):
        return waiting & set(resume)
    return waiting if len(waiting) == 1 else set()


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def prompt(interrupts: Sequence[Interrupt]) -> str:
    """The prompt a human reads: each interrupt's value as text (JSON unless it is a string), one a
    line, cut to the contract's length."""
    return bounded("\n".join(_text(i.value) for i in interrupts), MAX_PROMPT)


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
