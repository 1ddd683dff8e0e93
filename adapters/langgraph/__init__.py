"""LangGraph on the ledger (`pip install agentledger[langgraph]`): a checkpointer on the tenant's
JetStream bucket (`JetStreamSaver`), the link from ledger events to its checkpoints, and graph runs
as ledger sessions (`LedgerSaver`, `LedgerGraph`)."""

from agentledger.adapters.langgraph.checkpoint import CheckpointStoreError, JetStreamSaver
from agentledger.adapters.langgraph.graph import LedgerGraph
from agentledger.adapters.langgraph.links import checkpoint_link, linked_checkpoint
from agentledger.adapters.langgraph.run import RUN_KEY, RunMismatch
from agentledger.adapters.langgraph.saver import LedgerSaver

__all__ = ["RUN_KEY", "CheckpointStoreError", "JetStreamSaver", "LedgerGraph", "LedgerSaver", "RunMismatch",
           "checkpoint_link", "linked_checkpoint"]
