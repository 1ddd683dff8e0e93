"""The published contract matches the code."""

from __future__ import annotations

import json
from pathlib import Path

from handlers.app import asyncapi_app
from schemas.commands import COMMANDS
from schemas.contract import json_schema
from schemas.queries import QUERIES

ROOT = Path(__file__).resolve().parent.parent


def test_docs_schema_is_generated_from_the_code() -> None:
    committed = json.loads((ROOT / "docs" / "schema.json").read_text())
    assert committed == json.loads(json.dumps(json_schema())), "run: agentledger schema > docs/schema.json"


def test_protocol_doc_names_every_command_and_query() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text()
    missing = [name for name in [*COMMANDS, *QUERIES] if f"`{name}`" not in text]
    assert missing == []


def test_asyncapi_lists_the_command_and_query_channels() -> None:
    from faststream.specification.asyncapi import AsyncAPI

    spec = json.loads(AsyncAPI(asyncapi_app().broker, schema_version="3.0.0").to_specification().to_json())
    addresses = {c["address"] for c in spec["channels"].values()}
    assert addresses == {"ledger.cmd.*.>", "ledger.qry.*.>"}
