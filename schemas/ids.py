"""Identifier shapes. Ids become NATS subject tokens and paths, so the patterns forbid dots,
wildcards, spaces and separators.

Every pattern is anchored so that it must match the whole string: msgspec (like `re.search` and
`re.match`) lets `$` match before a trailing newline, so `ses_x\n` would pass a plain `^...$`.
`(?!\n)$` rules that out and still reads the same in JSON Schema (ECMAScript) regexes."""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta

END = r"(?!\n)$"  # the true end of the string, also for re.search / re.match
_TAIL = r"[A-Za-z0-9_-]{1,64}" + END


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
CommandId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,128}" + END, description="client idempotency key")]

TENANT_RE = id_pattern("tnt_")

