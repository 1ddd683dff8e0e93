"""Request bodies to typed structs, or the protocol's `invalid_command` / `unknown_command`."""

from __future__ import annotations

from typing import Any

import msgspec

from agentledger.schemas.commands import MAX_REQUEST_BYTES
from agentledger.schemas.errors import (
    DomainError,
    InvalidCommand,
    InvalidCommandDetails,
    PathError,
    UnknownCommand,
    UnknownCommandDetails,
)


def decoders(types: dict[str, type[Any]]) -> dict[str, msgspec.json.Decoder[Any]]:
    return {name: msgspec.json.Decoder(t) for name, t in types.items()}


def decode_request(table: dict[str, msgspec.json.Decoder[Any]], kind: str, name: str, body: bytes) -> Any:
    decoder = table.get(name)
    if decoder is None:
        raise DomainError(UnknownCommand(message=f"unknown {kind} {name!r}", details=UnknownCommandDetails(command=name)))
    if len(body) > MAX_REQUEST_BYTES:
        raise too_large(kind, len(body), MAX_REQUEST_BYTES)
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, ValueError) as e:
        # msgspec says "<what> - at `$.path`"; the protocol wants errors: [{path, message}]
        text = str(e)
        message, sep, path = text.rpartition(" - at `")
        error = PathError(path[:-1], message) if sep else PathError("$", text)
        raise DomainError(InvalidCommand(message=f"invalid {kind}: {text}",
                                         details=InvalidCommandDetails(errors=[error]))) from None


def too_large(what: str, size: int, limit: int) -> DomainError:
    message = f"{what} is {size} bytes, above the limit of {limit}"
    return DomainError(InvalidCommand(message=message, details=InvalidCommandDetails(errors=[PathError("$", message)])))
