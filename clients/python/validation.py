"""A request is checked locally against the contract before it is sent, and a refusal reads as a
sentence, never as a regular expression: `session id must start with ses_ followed by 1-64
letters, digits, _ or -`. The CLI checks its options with the same words."""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import msgspec.inspect as mi

from agentledger.schemas.common import Actor
from agentledger.schemas.ids import END, id_pattern

if TYPE_CHECKING:
    from agentledger.schemas.errors import InvalidCommand

S = TypeVar("S", bound=msgspec.Struct)
_SHAPE = re.compile(r"^\^(?P<prefix>[A-Za-z0-9_]*)\[(?P<chars>[^\]]+)\]\{(?P<low>\d+),(?P<high>\d+)\}$")
_CLASS_WORDS = (("A-Za-z", "letters"), ("a-z", "lowercase letters"), ("A-Z", "capital letters"), ("0-9", "digits"))
_ACTOR_PREFIX = {"user": "usr_", "agent": "agt_", "system": "sys_"}


def describe(pattern: str, what: str = "value") -> str:
    """`^ses_[A-Za-z0-9_-]{1,64}(?!\\n)$` -> `must start with ses_ followed by 1-64 letters, digits, _ or -`."""
    shape = _SHAPE.match(pattern.removesuffix(END))
    if shape is None:
        return f"{what} has the wrong format"
    chars, words = shape["chars"], []
    for span, word in _CLASS_WORDS:
        if span in chars:
            chars = chars.replace(span, "")
            words.append(word)
    words += list(chars)
    allowed = ", ".join(words[:-1]) + (" or " if len(words) > 1 else "") + words[-1]
    count = f"{shape['low']}-{shape['high']}"
    if shape["prefix"]:
        return f"{what} must start with {shape['prefix']} followed by {count} {allowed}"
    return f"{what} must be {count} {allowed}"


@cache
def _patterns() -> dict[str, str]:
    """Every pattern of the contract's requests -> the words for what it constrains ("session id")."""
    from agentledger.schemas.commands import COMMANDS
    from agentledger.schemas.queries import QUERIES

    found: dict[str, str] = {id_pattern(p): f"{kind} actor id" for kind, p in _ACTOR_PREFIX.items()}

    def walk(t: mi.Type, description: str | None = None) -> None:
        if isinstance(t, mi.Metadata):
            walk(t.type, (t.extra_json_schema or {}).get("description") or description)
        elif isinstance(t, mi.StrType) and t.pattern:
            found.setdefault(t.pattern, (description or "value").split(":")[0].replace("client idempotency key",
                                                                                       "command id"))
        elif isinstance(t, mi.StructType):
            for f in t.fields:
                walk(f.type)
        elif isinstance(t, mi.UnionType):
            for u in t.types:
                walk(u, description)
        elif isinstance(t, mi.ListType | mi.DictType):
            walk(t.item_type if isinstance(t, mi.ListType) else t.value_type, description)

    for info in mi.multi_type_info([*COMMANDS.values(), *QUERIES.values()]):
        walk(info)
    return found


def _value_at(body: Any, path: str) -> Any:
    node = body
    for key in re.findall(r"\.(\w+)|\[(\d+)\]", path):
        name, index = key
        try:
            node = node[int(index)] if index else node[name]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def humane(message: str) -> str:
    """msgspec's message with any regular expression replaced by words."""
    text = message.replace("\\\\n", "\\n")
    for pattern, what in _patterns().items():
        if pattern in text:
            return describe(pattern, what)
    return text


def invalid(message: str, path: str = "$") -> InvalidCommand:
    from agentledger.schemas.errors import InvalidCommand, InvalidCommandDetails, PathError

    return InvalidCommand(message=f"invalid request: {message}" + ("" if path == "$" else f" (at {path})"),
                          details=InvalidCommandDetails(errors=[PathError(path, message)]))


def check(cls: type[S], body: dict[str, Any]) -> S:
    """`body` as the request type, validated as the engine will validate it (InvalidCommand otherwise)."""
    from agentledger.client.api import exception

    try:
        return msgspec.convert(body, cls)
    except msgspec.ValidationError as e:
        text, sep, path = str(e).rpartition(" - at `")
        path = path[:-1] if sep else "$"
        message = humane(text if sep else str(e))
        value = _value_at(body, path)
        if isinstance(value, str) and message != text:
            message += f", not {value[:80]!r}"
        raise exception(invalid(message, path)) from None


def check_id(value: str, prefix: str, what: str) -> str:
    """`value` if it is a well-formed id with `prefix`; ValueError in words otherwise."""
    if not re.match(id_pattern(prefix), value):
        raise ValueError(f"{describe(id_pattern(prefix), what)}, not {value[:80]!r}")
    return value


def actor(value: Actor | str) -> Actor:
    """An actor, or its id alone: the id's prefix (`usr_`, `agt_`, `sys_`) gives its kind."""
    if isinstance(value, Actor):
        return value
    for kind, prefix in _ACTOR_PREFIX.items():
        if value.startswith(prefix):
            check_id(value, prefix, f"{kind} actor id")
            return Actor(kind=kind, id=value)  # type: ignore[arg-type]
    raise ValueError(f"{value[:80]!r} is not an actor id: it starts with usr_, agt_ or sys_")

