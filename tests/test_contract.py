"""The published contract matches the code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

import msgspec
import pytest

from agentledger.schemas.commands import COMMANDS
from agentledger.schemas.common import Actor
from agentledger.schemas.contract import json_schema, typed_envelopes
from agentledger.schemas.events import StoredEvent, ThreadCreated
from agentledger.schemas.queries import QUERIES, QUERY_RESULTS

ROOT = Path(__file__).resolve().parent.parent


def test_docs_schema_is_generated_from_the_code() -> None:
    committed = json.loads((ROOT / "docs" / "schema.json").read_text())
    assert committed == json.loads(json.dumps(json_schema())), "run: agentledger schema > docs/schema.json"


def test_every_query_declares_its_result() -> None:
    assert set(QUERY_RESULTS) == set(QUERIES)


def test_typed_envelopes_read_what_the_engine_writes() -> None:
    """The per-type envelope structs behind the schema's event unions decode a real envelope (a
    tagged union on `type`, so a `data` that disagrees with `type` is refused)."""
    event = ThreadCreated(thread_id="thd_x", project_id="prj_x", title="t", max_delegation_depth=1,
                          max_delegation_width=1)
    stored = StoredEvent(event_id="e", type="thread.created", tenant_id="tnt_a", boundary="b", command="thread.create",
                         command_id="c", correlation_id="c", actor=Actor(kind="user", id="usr_a"), at="t", data=event,
                         position=3)
    records = typed_envelopes(StoredEvent)
    union = Union[tuple(records)]  # noqa: UP007  (built at run time)
    decoded = msgspec.json.decode(msgspec.json.encode(stored), type=union)
    assert type(decoded).__name__ == "ThreadCreatedRecord" and decoded.data == event and decoded.position == 3
    wrong = msgspec.json.encode(stored).replace(b'"type":"thread.created"', b'"type":"thread.deleted"', 1)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(wrong, type=union)


def test_protocol_doc_names_every_command_and_query() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text()
    missing = [name for name in [*COMMANDS, *QUERIES] if f"`{name}`" not in text]
    assert missing == []

