"""The Python client of Agent Ledger: `Ledger.connect(...)`, then one typed method per command and
query (`await ledger.session.start(session_id=...)`), `events(...)`, `audit(...)` and `replay(...)`.
Every error is a `LedgerError`; each code of the protocol has its own class (`NotFound`,
`CapacityExceeded`, ...) with typed `details`. See docs/clients.md."""

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
    ThreadClosed,
    ThreadNotEmpty,
    Unavailable,
    UnknownCommand,
    Unsupported,
    VersionConflict,
)
from agentledger.client.audit import AuditRecord
from agentledger.client.connection import ConnectionRefused, NoReply, NoResponders
from agentledger.client.errors import CredsFileMissing, LedgerError, NoCredentials, NotAuthorised
from agentledger.client.ledger import Ledger
from agentledger.schemas.common import Actor, ProjectConfig, Summary
from agentledger.schemas.sandboxes import SandboxOptions, SandboxSpec

__all__ = [
    "ERRORS", "Actor", "AlreadyExists", "AuditRecord", "CapacityExceeded", "Conflict", "ConnectionRefused",
    "CredsFileMissing", "CrossProject", "CrossThread", "Forbidden", "HandoffRejected", "IllegalTransition", "Internal",
    "InvalidCommand", "Ledger", "LedgerError", "NoCredentials", "NoReply", "NoResponders", "NotAuthorised", "NotFound",
    "ProjectConfig", "SandboxOptions", "SandboxSpec", "Summary", "ThreadClosed", "ThreadNotEmpty", "Unavailable",
    "UnknownCommand", "Unsupported", "VersionConflict",
]
