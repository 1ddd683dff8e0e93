"""The Python client of Agent Ledger: `Ledger.connect(...)`, then one typed method per command and
query (`await ledger.session.start(session_id=...)`), `events(...)`, `audit(...)` and `replay(...)`.
Every error is a `LedgerError`; each code of the protocol has its own class (`NotFound`,
`CapacityExceeded`, ...) with typed `details`. See docs/clients.md.

The names below load on first use, so a program that only checks an id does not load NATS."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "agentledger.client.api": ("ERRORS", "AlreadyExists", "CapacityExceeded", "Conflict", "CrossProject", "CrossThread",
                               "Forbidden", "HandoffRejected", "IllegalTransition", "Internal", "InvalidCommand",
                               "NotFound", "NotHolder", "QuotaExceeded", "RateLimited", "ThreadClosed",
                               "ThreadNotEmpty", "Unavailable", "UnknownCommand", "Unsupported", "VersionConflict"),
    "agentledger.client.audit": ("AuditRecord",),
    "agentledger.client.connection": ("ConnectionClosed", "ConnectionRefused", "NoReply", "NoResponders"),
    "agentledger.client.errors": ("BadReply", "CredsFileMissing", "LedgerError", "NoCredentials", "NotAuthorised"),
    "agentledger.client.ledger": ("Ledger", "Retry"),
    "agentledger.schemas.common": ("Actor", "ProjectConfig", "Summary"),
    "agentledger.schemas.sandboxes": ("SandboxOptions", "SandboxSpec"),
}
_MODULE = {name: module for module, names in _WHERE.items() for name in names}
__all__ = [
    "ERRORS",
    "Actor",
    "AlreadyExists",
    "AuditRecord",
    "BadReply",
    "CapacityExceeded",
    "Conflict",
    "ConnectionClosed",
    "ConnectionRefused",
    "CredsFileMissing",
    "CrossProject",
    "CrossThread",
    "Forbidden",
    "HandoffRejected",
    "IllegalTransition",
    "Internal",
    "InvalidCommand",
    "Ledger",
    "LedgerError",
    "NoCredentials",
    "NoReply",
    "NoResponders",
    "NotAuthorised",
    "NotFound",
    "NotHolder",
    "ProjectConfig",
    "QuotaExceeded",
    "RateLimited",
    "Retry",
    "SandboxOptions",
    "SandboxSpec",
    "Summary",
    "ThreadClosed",
    "ThreadNotEmpty",
    "Unavailable",
    "UnknownCommand",
    "Unsupported",
    "VersionConflict",
]
assert sorted(__all__) == sorted(_MODULE)

if TYPE_CHECKING:
    from agentledger.client.api import (
        ERRORS,
        AlreadyExists,
        CapacityExceeded,
        Conflict,
        CrossProject,
        CrossThread,
        Forbidden,
        HandoffRejected,
        IllegalTransition,
        Internal,
        InvalidCommand,
        NotFound,
        NotHolder,
        QuotaExceeded,
        RateLimited,
        ThreadClosed,
        ThreadNotEmpty,
        Unavailable,
        UnknownCommand,
        Unsupported,
        VersionConflict,
    )
    from agentledger.client.audit import AuditRecord
    from agentledger.client.connection import ConnectionClosed, ConnectionRefused, NoReply, NoResponders
    from agentledger.client.errors import BadReply, CredsFileMissing, LedgerError, NoCredentials, NotAuthorised
    from agentledger.client.ledger import Ledger, Retry
    from agentledger.schemas.common import Actor, ProjectConfig, Summary
    from agentledger.schemas.sandboxes import SandboxOptions, SandboxSpec


def __getattr__(name: str) -> Any:
    if name not in _MODULE:
        raise AttributeError(f"module 'agentledger.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE[name]), name)
    globals()[name] = value
    return value
