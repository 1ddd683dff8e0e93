"""LangGraph on the ledger (`pip install agentledger[langgraph]`): a checkpointer on the tenant's
JetStream bucket, and the link from ledger events to its checkpoints."""

from agentledger.adapters.langgraph.checkpoint import CheckpointStoreError, JetStreamSaver
from agentledger.adapters.langgraph.links import checkpoint_link, linked_checkpoint

__all__ = ["CheckpointStoreError", "JetStreamSaver", "checkpoint_link", "linked_checkpoint"]
