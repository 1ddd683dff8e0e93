"""Identifier shapes. Ids become NATS subject tokens, so the patterns forbid dots, wildcards and spaces."""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta

_TAIL = r"[A-Za-z0-9_-]{1,64}$"


def id_pattern(prefix: str) -> str:
    return f"^{prefix}{_TAIL}"


def _id(prefix: str, what: str) -> Any:
    return Annotated[str, Meta(pattern=id_pattern(prefix), description=f"{what} id: `{prefix}` + 1-64 of [A-Za-z0-9_-]")]


TenantId = _id("tnt_", "tenant")
ProjectId = _id("prj_", "project")
ThreadId = _id("thd_", "thread")
SessionId = _id("ses_", "session")
EdgeId = _id("sub_", "delegation edge")
HandoffId = _id("hof_", "handoff")
SummaryId = _id("sum_", "summary")
SandboxId = _id("sbx_", "sandbox")
CommandId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="client idempotency key")]

TENANT_RE = id_pattern("tnt_")

