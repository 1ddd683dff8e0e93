"""docs/asyncapi.json: generated from the code, complete (every command, query, reply and event
with its real payload schema) and valid for the official AsyncAPI parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentledger.cli.asyncapi import asyncapi
from agentledger.handlers.auth.permissions import EFFECTS_COMMANDS
from agentledger.schemas.commands import COMMANDS
from agentledger.schemas.contract import event_types
from agentledger.schemas.queries import QUERIES
from tests.node_tools import node

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "asyncapi.json"


def test_docs_asyncapi_is_generated_from_the_code() -> None:
    assert json.loads(DOC.read_text()) == json.loads(json.dumps(asyncapi())), \
        "run: agentledger asyncapi > docs/asyncapi.json"


def test_every_request_reply_and_event_has_its_payload() -> None:
    doc = asyncapi()
    schemas, messages = doc["components"]["schemas"], doc["components"]["messages"]

    def payload(message: dict[str, str]) -> dict[str, object]:
        name = messages[message["$ref"].rsplit("/", 1)[1]]["payload"]["$ref"].rsplit("/", 1)[1]
        return schemas[name]

    for kind, table, letters in (("command", COMMANDS, "cmd"), ("query", QUERIES, "qry")):
        for name, struct in table.items():
            channel = doc["channels"][f"{kind}.{name}"]
            on = "fx" if name in EFFECTS_COMMANDS else letters  # the effect handler's commands: its own subject
            assert channel["address"] == f"ledger.{on}.{{tenant}}.{name}"
            assert payload(channel["messages"]["request"])["title"] == struct.__name__
            reply = doc["operations"][name]["reply"]["messages"][0]["$ref"].rsplit("/", 1)[1]
            assert payload(doc["channels"]["replies"]["messages"][reply])["oneOf"], name  # a union on ok
            if kind == "command":
                assert (doc["operations"][name]["x-roles"] == ["effects"]) == (name in EFFECTS_COMMANDS), name
    events = {m["$ref"].rsplit("/", 1)[1].removeprefix("event."): payload(m) for c in doc["channels"].values()
              if c["address"] and ".evt." in c["address"] for m in c["messages"].values()}
    assert set(events) == {str(e.__struct_config__.tag) for e in event_types()}
    for tag, schema in events.items():
        assert schema["properties"]["type"] == {"enum": [tag]} and "data" in schema["required"], tag


@pytest.mark.integration  # the AsyncAPI parser runs in node
def test_the_official_parser_accepts_it() -> None:
    r = node("asyncapi.mjs", str(DOC))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"parsed: {len(COMMANDS) + len(QUERIES) + 7} channels" in r.stdout, r.stdout


@pytest.mark.integration  # the AsyncAPI parser runs in node
def test_the_parser_refuses_a_broken_document(tmp_path: Path) -> None:
    """So the check above can fail: a dangling channel and a payload that is not a schema, in one
    operation and its message cut out of the document (the parser takes minutes over all of it)."""
    doc = asyncapi()
    operation = doc["operations"]["thread.get"]
    channel = operation["channel"]["$ref"].rsplit("/", 1)[-1]
    doc["channels"] = {channel: doc["channels"][channel]}
    doc["operations"] = {"thread.get": operation | {"channel": {"$ref": "#/channels/nowhere"}}}
    doc["components"]["schemas"]["ThreadGet"]["properties"]["thread_id"]["type"] = 7
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(doc))
    r = node("asyncapi.mjs", str(broken))
    assert r.returncode == 1 and "#/channels/nowhere' does not exist" in r.stdout, r.stdout + r.stderr
