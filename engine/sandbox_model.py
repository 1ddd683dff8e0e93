"""The sandbox boundary: what was asked of a sandbox (`intent`) and what the provider reported
(`status`). Requests queue in log order; the effect handler carries them out in that order."""

from __future__ import annotations

from eventsourcing.domain import event

from agentledger.engine.boundary_model import COMMAND_WINDOW, BoundaryModel
from agentledger.schemas.events import (
    SandboxCreated,
    SandboxCreateRequested,
    SandboxDestroyed,
    SandboxDestroyRequested,
    SandboxExecFailed,
    SandboxExecFinished,
    SandboxExecRequested,
    SandboxFailed,
    SandboxPaused,
    SandboxPauseRequested,
    SandboxResumed,
    SandboxResumeRequested,
)
from agentledger.schemas.sandboxes import SandboxIntent, SandboxOp, SandboxOptions, SandboxStatus


class SandboxState(BoundaryModel):
    ID_PREFIX = "sbx_"
    ID_FIELD = "sandbox_id"
    sandbox_id: str
    status: SandboxStatus  # what the provider reported
    intent: SandboxIntent  # what was last asked of it
    provider: str
    options: SandboxOptions
    owner_session_id: str | None
    thread_id: str | None
    forked_from: str | None
    location: str | None
    pending: dict[int, SandboxOp]  # request position -> op, until its outcome is reported
    last_error: str | None
    execs: dict[int, int]  # exec request position -> its outcome's position, for the last COMMAND_WINDOW execs

    def __init__(self, tenant_id: str, boundary: str, sandbox_id: str) -> None:
        super().__init__(tenant_id, boundary)
        self.sandbox_id = sandbox_id
        self.status = "creating"
        self.intent = "running"
        self.provider = ""
        self.options = SandboxOptions()
        self.owner_session_id = None
        self.thread_id = None
        self.forked_from = None
        self.location = None
        self.pending = {}
        self.last_error = None
        self.execs = {}

    def _request(self, op: SandboxOp) -> None:
        self.pending[self._applying_position] = op

    def _outcome(self, request_position: int) -> None:
        self.pending.pop(request_position, None)

    @event(SandboxCreateRequested)
    def sandbox_create_requested(self, provider: str, options: SandboxOptions, owner_session_id: str | None,
                                 thread_id: str | None, forked_from: str | None) -> None:
        self.exists = True
        self.provider, self.options = provider, options
        self.owner_session_id, self.thread_id, self.forked_from = owner_session_id, thread_id, forked_from
        self.status, self.intent = "creating", "running"
        self._request("fork" if forked_from else "create")

    @event(SandboxPauseRequested)
    def sandbox_pause_requested(self) -> None:
        self.intent = "paused"
        self._request("pause")

    @event(SandboxResumeRequested)
    def sandbox_resume_requested(self, owner_session_id: str | None, thread_id: str | None) -> None:
        self.intent = "running"
        if owner_session_id is not None:
            self.owner_session_id, self.thread_id = owner_session_id, thread_id
        self._request("resume")

    @event(SandboxDestroyRequested)
    def sandbox_destroy_requested(self) -> None:
        self.intent = "destroyed"
        self._request("destroy")

    @event(SandboxExecRequested)
    def sandbox_exec_requested(self) -> None:
        self._request("exec")

    def _exec_outcome(self, request_position: int) -> None:
        """An exec changes nothing of the sandbox: its outcome is only remembered, by position, so a
        reply (and a repeat of its command id) can find it."""
        self._outcome(request_position)
        self.execs[request_position] = self._applying_position
        if len(self.execs) > COMMAND_WINDOW:
            del self.execs[next(iter(self.execs))]

    @event(SandboxExecFinished)
    def sandbox_exec_finished(self, request_position: int) -> None:
        self._exec_outcome(request_position)

    @event(SandboxExecFailed)
    def sandbox_exec_failed(self, request_position: int) -> None:
        self._exec_outcome(request_position)

    def exec_outcome_at(self, request_position: int) -> int | None:
        """The position of the outcome of the exec requested at `request_position`, once recorded."""
        return self.execs.get(request_position)

    @event(SandboxCreated)
    def sandbox_created(self, location: str, request_position: int) -> None:
        self.status, self.location, self.last_error = "running", location, None
        self._outcome(request_position)

    @event(SandboxPaused)
    def sandbox_paused(self, request_position: int) -> None:
        self.status = "paused"
        self._outcome(request_position)

    @event(SandboxResumed)
    def sandbox_resumed(self, request_position: int) -> None:
        self.status = "running"
        self._outcome(request_position)

    @event(SandboxDestroyed)
    def sandbox_destroyed(self, request_position: int) -> None:
        self.status = "destroyed"
        self._outcome(request_position)

    @event(SandboxFailed)
    def sandbox_failed(self, request_position: int, op: SandboxOp, error: str) -> None:
        self.status, self.last_error = "failed", f"{op}: {error}"
        self._outcome(request_position)
