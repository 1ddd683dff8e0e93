"""How a ledger event points at a LangGraph checkpoint without carrying it: the checkpoint stays in
the tenant's bucket, and the command the adapter sends for a step carries

    causation_id = "lgcp:<checkpoint_id>"

The thread is the event's own (LangGraph's `thread_id` is the ledger thread id) and the namespace
is found in the bucket (`JetStreamSaver.locate(thread_id, checkpoint_id)`), so the link fits the
field's 128 characters whatever the depth of subgraphs. No contract field changes."""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig

PREFIX = "lgcp:"
MAX_LINK = 128  # the contract's limit on `causation_id`


def checkpoint_link(config: RunnableConfig) -> str:
    """The link for the checkpoint a config names (as `aput` returns it)."""
    checkpoint_id = str(config["configurable"]["checkpoint_id"])
    link = PREFIX + checkpoint_id
    if len(link) > MAX_LINK or not checkpoint_id:
        raise ValueError(f"checkpoint id {checkpoint_id!r} does not fit a causation_id ({MAX_LINK} characters)")
    return link


def linked_checkpoint(causation_id: str | None) -> str | None:
    """The checkpoint id an event links to, or None when its causation is something else."""
    if causation_id is None or not causation_id.startswith(PREFIX) or len(causation_id) == len(PREFIX):
        return None
    return causation_id[len(PREFIX):]
