"""Every subject and boundary filter string is built here, and only here.

On a clustered stream the expected-sequence check only serialises writers that send the
*identical* filter string, so no other module may compose one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agentledger.schemas.ids import TENANT_RE

_TENANT = re.compile(TENANT_RE)


@dataclass(frozen=True)
class EventSubject:
    """The tokens of `<prefix>.evt.<tenant>.<kind>.<entity>.<type>` (`thread.created` adds its
    project as a last token: `project`). Nothing here is checked yet: admission does that."""

    tenant: str
    kind: str
    entity: str
    type: str
    project: str | None = None


@dataclass(frozen=True)
class BoundaryOf:
    """What a boundary filter `<prefix>.evt.<tenant>.<kind>.<entity>.>` names."""

    tenant: str
    kind: str
    entity: str


@dataclass(frozen=True)
class Subjects:
    prefix: str = "ledger"

    # -- the event log ------------------------------------------------------------------------
    @property
    def events_all(self) -> str:
        return f"{self.prefix}.evt.>"

    def tenant_filter(self, tenant: str) -> str:
        return f"{self.prefix}.evt.{tenant}.>"

    def thread_filter(self, tenant: str, thread_id: str) -> str:
        return f"{self.prefix}.evt.{tenant}.thr.{thread_id}.>"

    def sandbox_filter(self, tenant: str, sandbox_id: str) -> str:
        return f"{self.prefix}.evt.{tenant}.sbx.{sandbox_id}.>"

    def thread_events_of(self, types: tuple[str, ...]) -> list[str]:
        """Consumer filters for these thread event types, in every tenant and thread."""
        return [f"{self.prefix}.evt.*.thr.*.{t}" for t in types]

    def sandbox_events_of(self, types: tuple[str, ...]) -> list[str]:
        return [f"{self.prefix}.evt.*.sbx.*.{t}" for t in types]

    @property
    def sandbox_events_all(self) -> str:
        """Every sandbox boundary's events, as one filter: what the effect handler's consumer reads.
        One filter, so that it can travel in the consumer-create subject, where the server holds the
        consumer to it and the effect handler's permissions can name it."""
        return f"{self.prefix}.evt.*.sbx.*.>"

    def project_filter(self, tenant: str, project_id: str) -> str:
        return f"{self.prefix}.evt.{tenant}.prj.{project_id}.>"

    def parse_event(self, subject: str) -> EventSubject | None:
        """The tokens of an event subject, or None when `subject` is not shaped like one."""
        head = [*self.prefix.split("."), "evt"]
        parts = subject.split(".")
        if parts[:len(head)] != head or len(parts) < len(head) + 4:
            return None
        tenant, kind, entity = parts[len(head):len(head) + 3]
        event_type = ".".join(parts[len(head) + 3:])
        if kind == "thr" and event_type.startswith("thread.created."):
            return EventSubject(tenant, kind, entity, "thread.created", event_type.removeprefix("thread.created."))
        return EventSubject(tenant, kind, entity, event_type)

    @staticmethod
    def parse_boundary(boundary_filter: str) -> BoundaryOf:
        """The tenant, kind and entity a boundary filter names (read from its end: the prefix may hold dots)."""
        parts = boundary_filter.split(".")
        return BoundaryOf(parts[-4], parts[-3], parts[-2])

    def boundary_of(self, event_subject: str) -> str:
        """The boundary filter an event's subject belongs to (inverse of `event_subject`)."""
        head = self.prefix.count(".") + 4  # <prefix>.evt.<tenant>.<kind>.<id>
        return ".".join(event_subject.split(".")[:head + 1]) + ".>"

    @staticmethod
    def event_subject(boundary_filter: str, event_type: str) -> str:
        """An event's subject is its boundary's filter with the event type in place of `>`."""
        assert boundary_filter.endswith(".>")
        return boundary_filter[:-1] + event_type

    # -- what decisions need beyond one boundary, found by subject ----------------------------
    @property
    def stream_subjects(self) -> list[str]:
        """Everything the stream holds: the events, and the session claims that land with them."""
        return [self.events_all, f"{self.prefix}.ses.>"]

    def thread_created_subject(self, boundary_filter: str, project_id: str) -> str:
        """`thread.created` carries its project as a last token, so a project's threads are a
        batched read of `project_threads_filter`, in creation order, not an index rebuilt from the log."""
        return self.event_subject(boundary_filter, "thread.created") + f".{project_id}"

    def project_threads_filter(self, tenant: str, project_id: str | None) -> str:
        """The `thread.created` subjects of a project's threads (of all the tenant's, for None)."""
        return f"{self.prefix}.evt.{tenant}.thr.*.thread.created.{project_id or '*'}"

    def session_claim_filter(self, tenant: str, session_id: str) -> str:
        """A session id's claim: at most one message ever (appended with expected sequence 0 on this
        filter, just before the event that introduces the session)."""
        return f"{self.prefix}.ses.{tenant}.{session_id}.>"

    def session_claim_subject(self, tenant: str, session_id: str, thread_id: str) -> str:
        return self.session_claim_filter(tenant, session_id)[:-1] + thread_id

    def entity_of(self, subject: str) -> str:
        """The entity id a claim or `thread.created` subject names: the thread id of a claim
        (its last token), the thread id of a `thread.created` subject (its fifth token after the prefix)."""
        parts = subject.split(".")
        head = self.prefix.count(".") + 1
        if parts[head] == "ses":
            return parts[-1]
        return parts[head + 3]

    def durable(self, worker: str) -> str:
        """The durable consumer name of one of the deployment's workers (`pm`, `fx`): shared by every
        replica, and named in the effect handler's permissions (consumer names take no dots)."""
        return f"{self.prefix}-{worker}".replace(".", "_")

    @staticmethod
    def snapshot_key(boundary_filter: str) -> str:
        """A boundary's key in the snapshot bucket (KV keys take no wildcards)."""
        assert boundary_filter.endswith(".>")
        return boundary_filter[:-2]

    # -- requests ---------------------------------------------------------------------------
    @property
    def commands_all(self) -> str:
        return f"{self.prefix}.cmd.*.>"

    @property
    def queries_all(self) -> str:
        return f"{self.prefix}.qry.*.>"

    @property
    def ping(self) -> str:
        """Engines answer here (in their queue group) once they serve requests: a readiness probe
        that touches no service. Only the deployment's own identities can reach it."""
        return f"{self.prefix}.ping"

    @property
    def effects_all(self) -> str:
        """Commands only the effect handler's identity may send (`sandbox.report_outcome`): a subject
        of their own, which no tenant imports and the admin may not publish on."""
        return f"{self.prefix}.fx.*.>"

    def command(self, tenant: str, name: str) -> str:
        return f"{self.prefix}.cmd.{tenant}.{name}"

    def effects_command(self, tenant: str, name: str) -> str:
        return f"{self.prefix}.fx.{tenant}.{name}"

    def query(self, tenant: str, name: str) -> str:
        return f"{self.prefix}.qry.{tenant}.{name}"

    def parse_request(self, subject: str) -> tuple[str, str]:
        """`<prefix>.cmd|qry|fx.<tenant>.<name>` -> (tenant, name); raises ValueError on a bad tenant."""
        head = self.prefix.count(".") + 2
        parts = subject.split(".")
        tenant, name = parts[head], ".".join(parts[head + 1:])
        if not _TENANT.match(tenant):
            raise ValueError(f"tenant {tenant!r} must match {TENANT_RE}")
        return tenant, name
