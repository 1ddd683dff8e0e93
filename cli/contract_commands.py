"""`agentledger schema` and `agentledger asyncapi`: the contract, generated from the code."""

from __future__ import annotations

from typing import Annotated

import typer

Prefix = Annotated[str, typer.Option("--prefix", envvar="AGENTLEDGER_PREFIX", help="subject prefix")]


def schema() -> None:
    """Print the JSON Schema of every command, query, reply and event (docs/schema.json)."""
    import json

    from agentledger.schemas.contract import json_schema

    print(json.dumps(json_schema(), indent=1, sort_keys=True))


def asyncapi(prefix: Prefix = "ledger") -> None:
    """Print the AsyncAPI 3.0 document: every channel, operation and payload (docs/asyncapi.json)."""
    import json

    from agentledger.cli.asyncapi import asyncapi as document

    print(json.dumps(document(prefix), indent=1))
