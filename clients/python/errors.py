"""What the client raises. Every error is a `LedgerError` with a stable `code`, a `message` for
people, `retryable` and typed `details`. The engine's error codes each have their class
(`agentledger.client.api`, generated from the contract's error union); the three below are the
client's own, raised before a request is sent, never retryable."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from agentledger.schemas.errors import AnyError


class LedgerError(Exception):
    """`error` is the protocol's error body when the engine (or a local check of the same rules)
    refused; None for the client's own errors."""

    code: ClassVar[str] = "error"

    def __init__(self, message: str, *, retryable: bool = False, details: Any = None,
                 error: AnyError | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.details = details
        self.error = error

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" + (" (retryable)" if self.retryable else "")


class NoCredentials(LedgerError):
    """The server wants credentials and none were found; `looked` lists where the lookup went."""

    code = "no_credentials"

    def __init__(self, server: str, looked: tuple[str, ...]) -> None:
        super().__init__(f"no credentials found for NATS at {server}: looked at {', '.join(looked)}")
        self.server, self.looked = server, looked


class CredsFileMissing(LedgerError):
    """A credentials file was named (`source`: `--creds` or `NATS_CREDS`) that does not exist."""

    code = "creds_file_missing"

    def __init__(self, path: Path, source: str) -> None:
        super().__init__(f"creds file {path} (from {source}) does not exist")
        self.path, self.source = path, source


class NotAuthorised(LedgerError):
    """The server refused these credentials (wrong deployment, revoked or expired)."""

    code = "not_authorised"

    def __init__(self, server: str, creds: Path | None, reason: str) -> None:
        super().__init__(f"NATS at {server} refused the credentials{f' in {creds}' if creds else ''}: {reason}")
        self.server, self.creds = server, creds


class BadReply(LedgerError):
    """A reply this client cannot read: from a newer engine, or from something that is not one."""

    code = "bad_reply"

    def __init__(self, subject: str, data: bytes, reason: str) -> None:
        super().__init__(f"cannot read the reply on {subject}: {reason}")
        self.subject, self.data = subject, data
