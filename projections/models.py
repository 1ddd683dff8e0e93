"""The read models every engine keeps in memory, fed from the log.

A boundary model here is both what queries read and what decisions are checked against.
Three feeds apply events to it: the live follower, the engine's own successful appends, and
refresh reads after a conflict. `BoundaryModel.apply` ignores what it has already applied, so
the feeds never double-count.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from engine import admission
from engine.boundary_model import BoundaryModel
from engine.project_model import ProjectState
from engine.sandbox_model import SandboxState
from engine.store import EventStore, RawEvent
from engine.subjects import Subjects
from engine.thread_model import ThreadState
from schemas.events import (
    Envelope,
    HandoffBroadcasted,
    HandoffTransferred,
    SessionCreated,
    SessionSpawned,
    ThreadCreated,
)

M = TypeVar("M", ThreadState, ProjectState, SandboxState)


class LedgerModels:
    def __init__(self, subjects: Subjects) -> None:
        self.subjects = subjects
        self._models: dict[str, BoundaryModel] = {}
        self._session_thread: dict[tuple[str, str], str] = {}
        self._project_threads: dict[tuple[str, str], list[str]] = {}
        self.position = 0  # last stream position the live follower applied (or quarantined)
        self.quarantine = admission.Quarantine()
        self._moved = asyncio.Event()

    # -- models -------------------------------------------------------------------------------
    def _get(self, kind: type[M], tenant: str, boundary: str, entity_id: str) -> M:
        model = self._models.get(boundary)
        if model is None:
            model = self._models[boundary] = kind(tenant, boundary, entity_id)
        assert isinstance(model, kind)
        return model

    def thread(self, tenant: str, thread_id: str) -> ThreadState:
        return self._get(ThreadState, tenant, self.subjects.thread_filter(tenant, thread_id), thread_id)

    def project(self, tenant: str, project_id: str) -> ProjectState:
        return self._get(ProjectState, tenant, self.subjects.project_filter(tenant, project_id), project_id)

    def sandbox(self, tenant: str, sandbox_id: str) -> SandboxState:
        return self._get(SandboxState, tenant, self.subjects.sandbox_filter(tenant, sandbox_id), sandbox_id)

    def _model_for(self, envelope: Envelope) -> BoundaryModel | None:
        model = self._models.get(envelope.boundary)
        if model is not None:
            return model
        parts = envelope.boundary.split(".")
        kind, entity = parts[-3], parts[-2]
        if kind == "thr":
            return self.thread(envelope.tenant_id, entity)
        if kind == "prj":
            return self.project(envelope.tenant_id, entity)
        if kind == "sbx":
            return self.sandbox(envelope.tenant_id, entity)
        return None

    # -- indexes ------------------------------------------------------------------------------
    def locate_session(self, tenant: str, session_id: str) -> str | None:
        """The thread a session belongs to; immutable once known, so never stale."""
        return self._session_thread.get((tenant, session_id))

    def project_threads(self, tenant: str, project_id: str) -> list[str]:
        return self._project_threads.get((tenant, project_id), [])

    def _index(self, envelope: Envelope, model: BoundaryModel) -> None:
        data, tenant = envelope.data, envelope.tenant_id
        if isinstance(model, ThreadState):
            new_sessions: list[str] = []
            if isinstance(data, (SessionCreated, SessionSpawned)):
                new_sessions = [data.session_id]
            elif isinstance(data, HandoffTransferred):
                new_sessions = [data.recipient.session_id]
            elif isinstance(data, HandoffBroadcasted):
                new_sessions = [r.session_id for r in data.recipients]
            elif isinstance(data, ThreadCreated):
                self._project_threads.setdefault((tenant, data.project_id), []).append(data.thread_id)
            for sid in new_sessions:
                self._session_thread.setdefault((tenant, sid), model.thread_id)

    # -- feeds --------------------------------------------------------------------------------
    def apply(self, envelope: Envelope, position: int, model: BoundaryModel | None = None) -> bool:
        model = model or self._model_for(envelope)
        if model is None or not admission.enter(model, envelope, position, self.quarantine, envelope.boundary):
            return False
        self._index(envelope, model)
        return True

    def _admit(self, raw: RawEvent, model: BoundaryModel | None = None) -> None:
        """Apply what the log holds at `raw.position` if `admission` lets it in; skip it otherwise."""
        admitted = admission.admit(raw, self.subjects)
        if isinstance(admitted, admission.Quarantined):
            self.quarantine.add(admitted)
            if model is not None:
                admission.skip(model, raw.position)
        else:
            self.apply(admitted, raw.position, model)

    def follow(self, raw: RawEvent) -> None:
        """The live follower's feed: every event of the stream, in order. Events this engine
        appended itself are already applied; they are not decoded a second time. A quarantined
        message counts as followed, so catching up never waits for it."""
        model = self._models.get(self.subjects.boundary_of(raw.subject))
        if model is None or model.position < raw.position:
            self._admit(raw, model)
        self.position = raw.position
        self._moved.set()
        self._moved = asyncio.Event()

    async def refresh(self, store: EventStore, model: BoundaryModel) -> None:
        """Bring one model up to the log's head for its boundary."""
        for raw in await store.read_latest(model.boundary, after=model.position):
            self._admit(raw, model)

    async def loaded(self, store: EventStore, model: M) -> M:
        """A boundary the follower has not shown yet is read from the log before anyone calls it absent."""
        if not model.exists:
            await self.refresh(store, model)
        return model

    async def resolve_session(self, store: EventStore, tenant: str, session_id: str, timeout: float) -> str | None:
        """Find a session's thread; on a miss, first let the follower reach the tenant's head, so a
        session another replica just created is found and an absent one is reported absent."""
        found = self.locate_session(tenant, session_id)
        if found is None:
            head = await store.last_position(self.subjects.tenant_filter(tenant))
            await self.wait_for(head, timeout)
            found = self.locate_session(tenant, session_id)
        return found

    async def wait_for(self, position: int, timeout: float) -> bool:
        """Wait until the follower has applied `position` (read-your-writes across replicas)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.position < position:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._moved.wait(), remaining)
            except TimeoutError:
                return False
        return True
