"""`LedgerSaver`: the JetStream checkpointer with the ledger beside it. LangGraph calls its
checkpointer at the edges of everything it runs, so this is where a run learns about subgraphs:
a subgraph's loop reads its checkpoint before any of its nodes runs (the session of its task is
spawned there, and a refusal stops it), and the enclosing task's writes say how it ended.
`acopy_thread` forks the ledger thread before copying the checkpoints.

Outside a `LedgerGraph` run (no run id in the config, or one this saver does not hold), it is the
plain `JetStreamSaver`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.checkpoint.serde.base import SerializerProtocol
from nats.js.kv import KeyValue

from agentledger.adapters.langgraph.checkpoint import JetStreamSaver, open_bucket
from agentledger.adapters.langgraph.run import RUN_KEY, LedgerRun, link
from agentledger.client import Ledger
from agentledger.schemas.accounts import CHECKPOINT_BUCKET


class LedgerSaver(JetStreamSaver):
    """`await LedgerSaver.open(ledger)` with a `Ledger` connected as a member of the tenant: its
    connection also reaches the tenant's checkpoint bucket."""

    def __init__(self, ledger: Ledger, kv: KeyValue, *, bucket: str = CHECKPOINT_BUCKET,
                 serde: SerializerProtocol | None = None, timeout: float = 5.0) -> None:
        super().__init__(ledger.nc, kv, bucket=bucket, serde=serde, timeout=timeout)
        self.ledger = ledger
        self.runs: dict[str, LedgerRun] = {}  # the runs in progress, by root session id

    @classmethod
    async def open(cls, ledger: Ledger, *, bucket: str = CHECKPOINT_BUCKET,  # type: ignore[override]
                   serde: SerializerProtocol | None = None, timeout: float = 5.0) -> LedgerSaver:
        return cls(ledger, await open_bucket(ledger.nc, bucket, timeout), bucket=bucket, serde=serde, timeout=timeout)

    def run_of(self, config: RunnableConfig | None) -> LedgerRun | None:
        session_id = (config or {}).get("configurable", {}).get(RUN_KEY)
        return self.runs.get(session_id) if isinstance(session_id, str) else None

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """A subgraph's loop reads its checkpoint first: its task's session is spawned (or found)
        before, so a refused spawn stops the subgraph before any of its nodes runs."""
        run = self.run_of(config)
        conf = config["configurable"]
        if run is not None and conf.get("checkpoint_ns"):
            await run.enter(str(conf["checkpoint_ns"]), dict(conf.get("checkpoint_map") or {}))
        return await super().aget_tuple(config)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        """The writes are stored; the sessions of the subgraphs the task ran end with it."""
        run = self.run_of(config)
        conf = config["configurable"]
        ending = None if run is None else run.task_wrote(str(conf.get("checkpoint_ns") or ""), task_id, writes,
                                                          conf.get("checkpoint_id"))
        await super().aput_writes(config, writes, task_id, task_path)
        if ending is not None:
            await ending

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """`thread.create` with `mode: "fork"` of the source at its current position (the fork's
        history is the source's up to there), then the checkpoints. A refused fork copies nothing."""
        source = (await self.ledger.thread.get(thread_id=source_thread_id)).thread
        head = await super().aget_tuple({"configurable": {"thread_id": source_thread_id, "checkpoint_ns": ""}})
        await self.ledger.thread.create(thread_id=target_thread_id, project_id=source.project_id, mode="fork",
                                        source_thread_id=source_thread_id,
                                        causation_id=link(head.checkpoint["id"] if head else None))
        await super().acopy_thread(source_thread_id, target_thread_id)
