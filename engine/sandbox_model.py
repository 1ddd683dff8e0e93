"""The sandbox boundary: what was asked of a sandbox (`intent`) and what the provider reported
(`status`). Requests queue in log order; the effect handler carries them out in that order."""

from __future__ import annotations

from eventsourcing.domain import event

from agentledger.engine.boundary_model import BoundaryModel
from agentledger.schemas.events import (
    SandboxCreated,
    SandboxCreateRequested,
    SandboxDestroyed,
    SandboxDestroyRequested,
    SandboxFailed,
    SandboxPaused,
    SandboxPauseRequested,
    SandboxResumed,
    SandboxResumeRequested,
)
from agentledger.schemas.sandboxes import SandboxOptions


class SandboxState(BoundaryModel):
    def __init__(self, tenant_id: str, boundary: str, sandbox_id: str) -> None:
        super().__init__(tenant_id, boundary)
        self.sandbox_id = sandbox_id
        self.status = "creating"
        self.intent = "running"
        self.provider = ""
        self.options = SandboxOptions()
        self.owner_session_id: str | None = None
        self.thread_id: str | None = None
        self.forked_from: str | None = None
        self.location: str | None = None
        self.pending: dict[int, str] = {}  # request position -> op, until its outcome is reported
        self.last_error: str | None = None

    def _request(self, op: str) -> None:
        self.pending[self._applying_position] = op

    def _outcome(self, request_position: int) -> None:
        self.pending.pop(request_position, None)

    @event(SandboxCreateRequested)
    def _(self, provider: str, options: SandboxOptions, owner_session_id: str | None, thread_id: str | None,
          forked_from: str | None) -> None:
        self.exists = True
        self.provider, self.options = provider, options
        self.owner_session_id, self.thread_id, self.forked_from = owner_session_id, thread_id, forked_from
        self.status, self.intent = "creating", "running"
        self._request("fork" if forked_from else "create")

    @event(SandboxPauseRequested)
    def _(self) -> None:
        self.intent = "paused"
        self._request("pause")

    @event(SandboxResumeRequested)
    def _(self, owner_session_id: str | None, thread_id: str | None) -> None:
        self.intent = "running"
        if owner_session_id is not None:
            self.owner_session_id, self.thread_id = owner_session_id, thread_id
        self._request("resume")

    @event(SandboxDestroyRequested)
    def _(self) -> None:
        self.intent = "destroyed"
        self._request("destroy")

    @event(SandboxCreated)
    def _(self, location: str, request_position: int) -> None:
        self.status, self.location, self.last_error = "running", location, None
        self._outcome(request_position)

    @event(SandboxPaused)
    def _(self, request_position: int) -> None:
        self.status = "paused"
        self._outcome(request_position)

    @event(SandboxResumed)
    def _(self, request_position: int) -> None:
        self.status = "running"
        self._outcome(request_position)

    @event(SandboxDestroyed)
    def _(self, request_position: int) -> None:
        self.status = "destroyed"
        self._outcome(request_position)

    @event(SandboxFailed)
    def _(self, request_position: int, op: str, error: str) -> None:
        self.status, self.last_error = "failed", f"{op}: {error}"
        self._outcome(request_position)
