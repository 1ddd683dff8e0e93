"""The OpenAI Agents SDK on the ledger (`pip install 'agentledger[openai-agents]'`): a run recorded and
governed by the ledger (`LedgerRun`), agents used as tools as spawned sessions (`ledger_tool`), tool
approvals across processes (`decide`, `pending_approval`), and the ledger's sandboxes for a
`SandboxAgent` (`LedgerSandboxClient`). See docs/integrations.md."""

from agentledger.adapters.openai_agents.actors import actor_id
from agentledger.adapters.openai_agents.approvals import PendingApproval, decide, pending_approval
from agentledger.adapters.openai_agents.errors import (
    AdapterError,
    CascadedFailure,
    NotAwaitingInput,
    NothingToResume,
    NotInLedgerRun,
    SandboxUnavailable,
    StoreError,
    Unmapped,
)
from agentledger.adapters.openai_agents.hooks import LedgerHooks
from agentledger.adapters.openai_agents.run import LedgerRun
from agentledger.adapters.openai_agents.sandbox import LedgerSandboxClient, LedgerSandboxClientOptions
from agentledger.adapters.openai_agents.tools import Refusal, ledger_tool

__all__ = [
    "AdapterError",
    "CascadedFailure",
    "LedgerHooks",
    "LedgerRun",
    "LedgerSandboxClient",
    "LedgerSandboxClientOptions",
    "NotAwaitingInput",
    "NotInLedgerRun",
    "NothingToResume",
    "PendingApproval",
    "Refusal",
    "SandboxUnavailable",
    "StoreError",
    "Unmapped",
    "actor_id",
    "decide",
    "ledger_tool",
    "pending_approval",
]
