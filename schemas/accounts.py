"""What each tenant's own NATS account holds besides its users, by name: clients reach these
directly with a tenant's credentials, so their names are part of the contract."""

from __future__ import annotations


def audit_stream(stream: str) -> str:
    """The tenant's own copy of its events, in its own account, sourced from the engine's `stream`
    (a source may not carry the name of the stream it reads, hence the prefix)."""
    return f"AUDIT_{stream}"


CHECKPOINT_BUCKET = "agentledger_checkpoints"
"""The KV bucket in each tenant's account where agent frameworks keep their checkpoints (the
LangGraph saver in `agentledger.adapters.langgraph`); never in the engine's account or stream."""


def kv_stream(bucket: str) -> str:
    """The stream behind a KV bucket (the name every NATS client library uses)."""
    return f"KV_{bucket}"
