"""The machine-readable contract: JSON Schema for every command, query, reply and event,
generated from the same msgspec types the engine decodes with, so it cannot drift."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.commands import COMMANDS
from schemas.events import Envelope, StoredEvent
from schemas.queries import QUERIES
from schemas.replies import CommandReply, QueryReply


def json_schema() -> dict[str, Any]:
    commands, queries = sorted(COMMANDS), sorted(QUERIES)
    types = [COMMANDS[n] for n in commands] + [QUERIES[n] for n in queries] + [CommandReply, QueryReply, Envelope,
                                                                              StoredEvent]
    refs, components = msgspec.json.schema_components(types, ref_template="#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Agent Ledger wire contract",
        "commands": dict(zip(commands, refs[:len(commands)], strict=True)),
        "queries": dict(zip(queries, refs[len(commands):len(commands) + len(queries)],
                                                   strict=True)),
        "replies": {"command": refs[-4], "query": refs[-3]},
        "events": {"envelope": refs[-2], "stored": refs[-1]},
        "$defs": components,
    }
