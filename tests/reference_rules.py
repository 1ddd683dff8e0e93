"""A small reference of the domain rules, written apart from the engine (plain dicts, no engine
model, no engine decision), for two uses:

- predicting: `check_<command>(...)` says which code a command must get ("ok" or an error code),
  and `apply_<command>(...)` records an accepted one (the model-based tests);
- replaying: `replay(log)` feeds every stored event through the same checks as the command that
  must have allowed it and lists every rule the log breaks (the fault and race tests).

It knows the rules of docs/domain.md for projects, threads, sessions, delegation, handoffs and
sandbox holders. Shutdown policies are modelled for `destroy`, `pause` and `keep`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

RUNNING = ("active", "awaiting_hitl")
BLOCKING = ("active", "awaiting_hitl", "awaiting_merge", "locked")
REJECT = {"active": "active_run", "awaiting_hitl": "pending_hitl", "awaiting_merge": "pending_subsession",
          "locked": "pending_subsession"}


@dataclass
class Ses:
    thread: str
    status: str
    depth: int = 0
    parent: str | None = None
    edge: str | None = None  # None for a root; "open", "completed", "failed", "cancelled"
    fail_fast: bool = False
    handoff: str | None = None  # broadcast this session is a recipient of
    owner_version: int = 0
    open_children: int = 0
    sandbox: str | None = None  # owned sandbox
    policy: str = "destroy"


@dataclass
class Sbx:
    thread: str | None
    exists: bool = True  # on the sandbox boundary
    destroyed: bool = False  # by hand, on the sandbox boundary
    owner: str | None = None
    holding: bool = False
    thread_destroyed: bool = False  # a thread decision destroyed it


@dataclass
class Rules:
    projects: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (depth cap, width cap)
    threads: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, Ses] = field(default_factory=dict)
    pending: dict[str, set[str]] = field(default_factory=dict)  # broadcast -> recipients still running
    sandboxes: dict[str, Sbx] = field(default_factory=dict)
    by_thread: dict[str, list[str]] = field(default_factory=dict)  # thread -> its sessions

    # -- projects and threads ----------------------------------------------------------------
    def check_project_create(self, project_id: str) -> str:
        return "already_exists" if project_id in self.projects else "ok"

    def apply_project_create(self, project_id: str, depth: int = 4, width: int = 8) -> None:
        self.projects[project_id] = (depth, width)

    def check_thread_create(self, project_id: str, thread_id: str) -> str:
        if project_id not in self.projects:
            return "not_found"
        return "already_exists" if thread_id in self.threads else "ok"

    def apply_thread_create(self, project_id: str, thread_id: str) -> None:
        depth, width = self.projects[project_id]
        self.threads[thread_id] = {"status": "open", "depth": depth, "width": width}

    def _thread(self, thread_id: str) -> dict[str, Any] | None:
        t = self.threads.get(thread_id)
        return t if t is not None and t["status"] != "deleted" else None

    def blocking(self, thread_id: str) -> list[str]:
        return [s for s in self.by_thread.get(thread_id, []) if self.sessions[s].status in BLOCKING]

    def check_thread_archive(self, thread_id: str) -> str:
        if self._thread(thread_id) is None:
            return "not_found"
        return "thread_not_empty" if self.blocking(thread_id) else "ok"

    def apply_thread_archive(self, thread_id: str) -> None:
        self.threads[thread_id]["status"] = "archived"
        for sbx in self.sandboxes.values():
            if sbx.owner is not None and self.sessions[sbx.owner].thread == thread_id:
                self._destroyed(sbx)

    def check_thread_unarchive(self, thread_id: str) -> str:
        return "not_found" if self._thread(thread_id) is None else "ok"

    def apply_thread_unarchive(self, thread_id: str) -> None:
        self.threads[thread_id]["status"] = "open"

    # -- sandboxes ------------------------------------------------------------------------------
    def check_sandbox_create(self, sandbox_id: str) -> str:
        return "already_exists" if sandbox_id in self.sandboxes and self.sandboxes[sandbox_id].exists else "ok"

    def apply_sandbox_create(self, sandbox_id: str, thread_id: str | None) -> None:
        self.sandboxes[sandbox_id] = Sbx(thread=thread_id)

    def check_sandbox_destroy(self, sandbox_id: str) -> str:
        sbx = self.sandboxes.get(sandbox_id)
        return "not_found" if sbx is None or not sbx.exists else "ok"

    def apply_sandbox_destroy(self, sandbox_id: str) -> None:
        self.sandboxes[sandbox_id].destroyed = True

    def _destroyed(self, sbx: Sbx) -> None:
        sbx.owner, sbx.holding, sbx.thread_destroyed = None, False, True

    def check_binding(self, thread_id: str, spec: dict[str, Any] | None) -> str:
        if spec is None or spec["mode"] == "new":
            return "ok"
        sbx = self.sandboxes.get(spec["sandbox_id"])
        if sbx is None or not sbx.exists:
            return "not_found"
        if sbx.destroyed:
            return "illegal_transition"
        if spec["mode"] == "continue":
            if sbx.thread != thread_id:
                return "invalid_command"
            if sbx.thread_destroyed or sbx.holding:
                return "illegal_transition"
        return "ok"

    def bind_sandbox(self, session_id: str, sandbox_id: str, policy: str | None) -> None:
        """The session owns the sandbox, which it holds while running; `policy` applies when it stops."""
        sbx = self.sandboxes.setdefault(sandbox_id, Sbx(thread=self.sessions[session_id].thread, exists=False))
        sbx.owner, sbx.holding = session_id, True
        self.sessions[session_id].sandbox, self.sessions[session_id].policy = sandbox_id, policy or "destroy"

    # -- sessions -------------------------------------------------------------------------------
    def _live(self, session_id: str) -> Ses | None:
        s = self.sessions.get(session_id)
        return s if s is not None and self._thread(s.thread) is not None else None

    def _from(self, session_id: str, statuses: tuple[str, ...] | frozenset[str]) -> str:
        """A transition allowed only from `statuses`: not_found, illegal_transition or ok."""
        s = self._live(session_id)
        if s is None:
            return "not_found"
        return "ok" if s.status in statuses else "illegal_transition"

    def check_session_create(self, thread_id: str, session_id: str, sandbox: dict[str, Any] | None = None) -> str:
        if session_id in self.sessions and self.sessions[session_id].thread != thread_id:
            return "already_exists"
        t = self._thread(thread_id)
        if t is None:
            return "not_found"
        if t["status"] != "open":
            return "thread_closed"
        if session_id in self.sessions:
            return "already_exists"
        return self.check_binding(thread_id, sandbox)

    def apply_session_create(self, thread_id: str, session_id: str, sandbox: str | None = None,
                             owned: bool = False, policy: str | None = None) -> None:
        self.sessions[session_id] = Ses(thread=thread_id, status="idle")
        self.by_thread.setdefault(thread_id, []).append(session_id)
        if sandbox is not None and owned:
            self.bind_sandbox(session_id, sandbox, policy)

    def check_session_start(self, session_id: str) -> str:
        s = self._live(session_id)
        if s is None:
            return "not_found"
        if self.threads[s.thread]["status"] != "open":
            return "thread_closed"
        if s.status != "idle" or (s.edge is not None and s.edge != "open"):
            return "illegal_transition"
        return "ok"

    def move_to(self, s: Ses, status: str, session_id: str) -> None:
        """A status change, with what it does to the sandbox the session owns."""
        was_running = s.status in RUNNING
        s.status = status
        sbx = self.sandboxes.get(s.sandbox) if s.sandbox else None
        if sbx is not None and sbx.owner == session_id:
            if status in RUNNING:
                sbx.holding = True
            elif was_running:
                sbx.holding = False
                if s.policy == "destroy":
                    self._destroyed(sbx)

    def apply_session_start(self, session_id: str) -> None:
        self.move_to(self.sessions[session_id], "active", session_id)

    def check_running(self, session_id: str) -> str:
        """complete, fail, cancel and request_input need a running session."""
        return self._from(session_id, RUNNING)

    def apply_end(self, session_id: str, outcome: str) -> None:
        """outcome: completed, cancelled (both leave it idle) or failed."""
        s = self.sessions[session_id]
        fails_parent = (outcome == "failed" and s.fail_fast and s.edge == "open" and s.parent is not None
                        and self.sessions[s.parent].status in RUNNING)
        self.move_to(s, "failed" if outcome == "failed" else "idle", session_id)
        if s.edge != "open":
            return
        s.edge = outcome
        assert s.parent is not None
        parent = self.sessions[s.parent]
        parent.open_children -= 1
        if s.handoff is not None:
            self.pending[s.handoff].discard(session_id)
            if not self.pending[s.handoff] and parent.status == "awaiting_merge":
                self.move_to(parent, "idle", s.parent)
        if fails_parent:
            self.apply_end(s.parent, "failed")

    def check_session_archive(self, session_id: str) -> str:
        return self._from(session_id, ("idle", "failed"))

    def apply_session_archive(self, session_id: str) -> None:
        self.move_to(self.sessions[session_id], "archived", session_id)

    def check_session_restore(self, session_id: str) -> str:
        return self._from(session_id, ("archived",))

    def apply_session_restore(self, session_id: str) -> None:
        self.move_to(self.sessions[session_id], "idle", session_id)

    # -- delegation ---------------------------------------------------------------------------
    def _caps(self, parent: Ses, n: int) -> str:
        t = self.threads[parent.thread]
        if parent.depth + 1 > t["depth"] or parent.open_children + n > t["width"]:
            return "capacity_exceeded"
        return "ok"

    def check_spawn(self, parent_id: str, session_id: str, sandbox: dict[str, Any] | None = None) -> str:
        parent = self.sessions.get(parent_id)
        if parent is None:
            return "not_found"
        if session_id in self.sessions and self.sessions[session_id].thread != parent.thread:
            return "already_exists"
        t = self._thread(parent.thread)
        if t is None:
            return "not_found"
        if t["status"] != "open":
            return "thread_closed"
        if parent.status not in RUNNING:
            return "illegal_transition"
        caps = self._caps(parent, 1)
        if caps != "ok":
            return caps
        if session_id in self.sessions:
            return "already_exists"
        return self.check_binding(parent.thread, sandbox)

    def _child(self, parent_id: str, session_id: str, fail_fast: bool = False, handoff: str | None = None) -> None:
        parent = self.sessions[parent_id]
        self.sessions[session_id] = Ses(thread=parent.thread, status="active", depth=parent.depth + 1,
                                        parent=parent_id, edge="open", fail_fast=fail_fast, handoff=handoff)
        self.by_thread.setdefault(parent.thread, []).append(session_id)
        parent.open_children += 1

    def apply_spawn(self, parent_id: str, session_id: str, fail_fast: bool = False, sandbox: str | None = None,
                    owned: bool = False, policy: str | None = None) -> None:
        self._child(parent_id, session_id, fail_fast)
        if sandbox is not None and owned:
            self.bind_sandbox(session_id, sandbox, policy)

    def check_handoff(self, source_id: str, expected: int, recipients: int = 1) -> str:
        s = self.sessions.get(source_id)
        if s is None:
            return "not_found"
        t = self._thread(s.thread)
        if t is None:
            return "not_found"
        if t["status"] != "open":
            return "thread_closed"
        if s.owner_version != expected:
            return "version_conflict"
        if s.status in REJECT or (s.status == "idle" and s.open_children):
            return "handoff_rejected"
        if s.status != "idle":
            return "illegal_transition"
        return self._caps(s, recipients)

    def apply_handoff(self, source_id: str, recipients: list[str], broadcast: bool, handoff_id: str) -> None:
        s = self.sessions[source_id]
        s.owner_version += 1
        if broadcast:
            self.move_to(s, "awaiting_merge", source_id)
            self.pending[handoff_id] = set(recipients)
        for r in recipients:
            self._child(source_id, r, handoff=handoff_id if broadcast else None)

    # -- invariants ----------------------------------------------------------------------------
    def broken(self, thread_id: str) -> list[str]:
        """Rules about a thread as a whole, true after every event."""
        out = []
        t = self.threads.get(thread_id)
        if t is None:
            return out
        if t["status"] == "archived" and self.blocking(thread_id):
            out.append(f"archived {thread_id} holds {self.blocking(thread_id)}")
        for session_id in self.by_thread.get(thread_id, []):
            s = self.sessions[session_id]
            if s.open_children > self.threads[s.thread]["width"] or s.open_children < 0:
                out.append(f"{session_id} has {s.open_children} open children")
            if s.depth > self.threads[s.thread]["depth"]:
                out.append(f"{session_id} at depth {s.depth}")
        return out


def _expect(violations: list[str], where: str, code: str) -> None:
    if code != "ok":
        violations.append(f"{where}: the rules say {code}")


def replay(rules: Rules, log: list[bytes]) -> list[str]:
    """Feed every stored event (raw bytes, decoded here as plain JSON) through the rules."""
    violations: list[str] = []
    seen: set[tuple[str, str]] = set()
    for raw in log:
        e = msgspec.json.decode(raw)
        d, kind, thread = e["data"], e["type"], e["boundary"].split(".")[-2]
        where = f"{kind} {e['command_id']}"
        key = (e["boundary"], e["command_id"])
        if key in seen:
            violations.append(f"{where}: command recorded twice in {e['boundary']}")
        seen.add(key)
        if kind == "project.created":
            _expect(violations, where, rules.check_project_create(d["project_id"]))
            cfg = d.get("config", {})
            rules.apply_project_create(d["project_id"], cfg.get("max_delegation_depth", 4),
                                       cfg.get("max_delegation_width", 8))
        elif kind == "thread.created":
            _expect(violations, where, rules.check_thread_create(d["project_id"], d["thread_id"]))
            rules.apply_thread_create(d["project_id"], d["thread_id"])
        elif kind == "thread.archived":
            _expect(violations, where, rules.check_thread_archive(d["thread_id"]))
            rules.apply_thread_archive(d["thread_id"])
        elif kind == "thread.unarchived":
            _expect(violations, where, rules.check_thread_unarchive(d["thread_id"]))
            rules.apply_thread_unarchive(d["thread_id"])
        elif kind == "thread.deleted":
            rules.threads[d["thread_id"]]["status"] = "deleted"
        elif kind == "sandbox.create_requested":
            if d["sandbox_id"] not in rules.sandboxes or not rules.sandboxes[d["sandbox_id"]].exists:
                sbx = rules.sandboxes.setdefault(d["sandbox_id"], Sbx(thread=d.get("thread_id")))
                sbx.exists, sbx.thread = True, d.get("thread_id")
        elif kind == "sandbox.destroy_requested":
            rules.apply_sandbox_destroy(d["sandbox_id"])
        elif kind in ("session.created", "session.spawned"):
            b = d.get("sandbox")
            spec = ({"mode": b["mode"], "sandbox_id": b.get("source_sandbox_id") or b["sandbox_id"]}
                    if b and b["mode"] != "new" else None)
            if kind == "session.created":
                _expect(violations, where, rules.check_session_create(thread, d["session_id"], spec))
                rules.apply_session_create(thread, d["session_id"])
            else:
                _expect(violations, where, rules.check_spawn(d["parent_session_id"], d["session_id"], spec))
                rules.apply_spawn(d["parent_session_id"], d["session_id"], d["failure_mode"] == "fail_fast")
            if b and b["owned"]:
                rules.bind_sandbox(d["session_id"], b["sandbox_id"], b.get("shutdown"))
        elif kind == "session.started":
            _expect(violations, where, rules.check_session_start(d["session_id"]))
            rules.apply_session_start(d["session_id"])
        elif kind == "session.input_requested":
            s = rules.sessions[d["session_id"]]
            if s.status != "active":
                violations.append(f"{where}: session was {s.status}")
            rules.move_to(s, "awaiting_hitl", d["session_id"])
        elif kind == "session.input_provided":
            s = rules.sessions[d["session_id"]]
            if s.status != "awaiting_hitl":
                violations.append(f"{where}: session was {s.status}")
            rules.move_to(s, "active", d["session_id"])
        elif kind in ("session.completed", "session.failed", "session.cancelled"):
            _expect(violations, where, rules.check_running(d["session_id"]))
            rules.apply_end(d["session_id"], kind.split(".")[1])
        elif kind == "session.archived":
            _expect(violations, where, rules.check_session_archive(d["session_id"]))
            rules.apply_session_archive(d["session_id"])
        elif kind == "session.restored":
            _expect(violations, where, rules.check_session_restore(d["session_id"]))
            rules.apply_session_restore(d["session_id"])
        elif kind in ("handoff.transferred", "handoff.broadcast"):
            recipients = [d["recipient"]] if kind == "handoff.transferred" else d["recipients"]
            source = rules.sessions.get(d["source_session_id"])
            expected = source.owner_version if source else 0
            if d["owner_version"] != expected + 1:
                violations.append(f"{where}: owner version {d['owner_version']} after {expected}: two owners")
            _expect(violations, where, rules.check_handoff(d["source_session_id"], expected, len(recipients)))
            rules.apply_handoff(d["source_session_id"], [r["session_id"] for r in recipients],
                                kind == "handoff.broadcast", d["handoff_id"])
        if ".thr." in e["boundary"]:
            violations.extend(f"after {where}: {v}" for v in rules.broken(thread))
    return violations
