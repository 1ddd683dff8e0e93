"""What the adapter raises besides the ledger's own errors (`agentledger.client.LedgerError` and its
classes, raised as they are)."""

from __future__ import annotations


class AdapterError(Exception):
    """An error of the OpenAI Agents adapter."""


class NotInLedgerRun(AdapterError):
    """A ledger tool or hook ran outside `LedgerRun.run` / `resume`: there is no session to speak for."""


class CascadedFailure(AdapterError):
    """A `fail_fast` child failed and the ledger failed its parent `session_id` in the same event, so
    the parent's run stops here."""

    def __init__(self, session_id: str, child_session_id: str, reason: str) -> None:
        super().__init__(f"session {session_id} failed with its fail_fast child {child_session_id}: {reason}")
        self.session_id, self.child_session_id, self.reason = session_id, child_session_id, reason


class NothingToResume(AdapterError):
    """The run has no pause recorded: it never paused, or another process resumed it already."""


class NotAwaitingInput(AdapterError):
    """The paused session ended (failed, cancelled) instead of getting its input: the run cannot resume."""

    def __init__(self, session_id: str, status: str) -> None:
        super().__init__(f"session {session_id} is {status}: it no longer waits for input")
        self.session_id, self.status = session_id, status


class Unmapped(AdapterError):
    """Something the SDK did that has no place in the ledger's model (the message says what)."""


class SandboxUnavailable(AdapterError):
    """The sandbox bound to the agent's session failed or is being destroyed: there is nothing to run in."""


class StoreError(AdapterError):
    """The tenant's checkpoint bucket could not be read or written (the message says what to do)."""
