"""Writes `api.py`, the client's typed surface, from the contract: one exception class per error
code of the error union, and one method per command and query (`session.request_input` ->
`ledger.session.request_input(...)`), whose keyword arguments are the request's fields and whose
return type is the command's `RESULT` (a query's result type). A paged query (one with `after`
and `limit`) also gets `<name>_all`, an async iterator over every item of every page.

    python -m agentledger.client.codegen          # rewrite clients/python/api.py
    python -m agentledger.client.codegen --check  # exit 1 if it is out of date

A new command or query needs nothing else: run this and commit the file.
"""

from __future__ import annotations

import json
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

import msgspec

from agentledger.schemas.commands import COMMANDS, Command
from agentledger.schemas.common import Actor
from agentledger.schemas.errors import AnyError
from agentledger.schemas.queries import QUERIES, QUERY_RESULTS, Query

TARGET = Path(__file__).with_name("api.py")
COMMON = ("actor", "command_id", "correlation_id", "causation_id")
HEADER = '''"""The client's typed surface, generated from the contract (schemas/) by
`python -m agentledger.client.codegen`: do not edit (tests/test_client.py fails while it is out of
date). One exception class per error code, each carrying its typed `details`; one method per
command and query, grouped by the name's first part; `<name>_all` iterates every page of a paged
query."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol, TypeVar

from agentledger.client.errors import LedgerError
from agentledger.schemas import commands, common, errors, events, queries, results, sandboxes

R = TypeVar("R")


class Sender(Protocol):
    """What the groups send through (`Ledger`)."""

    async def command(self, cls: type[commands.Command], result: type[R], fields: dict[str, Any]) -> R: ...

    async def query(self, cls: type[queries.Query], result: type[R], fields: dict[str, Any]) -> R: ...

    def pages(self, cls: type[queries.Query], result: type[Any], fields: dict[str, Any], items: str) -> AsyncIterator[Any]: ...


class Group:
    def __init__(self, sender: Sender) -> None:
        self._sender = sender
'''
MODULES = ("commands", "common", "errors", "events", "queries", "results", "sandboxes")


def _name(cls: type[Any]) -> str:
    module = cls.__module__.rpartition(".")[2]
    assert cls.__module__.startswith("agentledger.schemas.") and module in MODULES, cls
    return f"{module}.{cls.__name__}"


def render(tp: Any, actor_ids: bool = False) -> str:
    """A type as source text; with `actor_ids`, an Actor may also be given as its id alone."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return render(args[0], actor_ids)
    if tp is type(None):
        return "None"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(render(a, actor_ids) for a in args)
    if origin is typing.Literal:
        return f"Literal[{', '.join(json.dumps(a) for a in args)}]"
    if origin is list:
        return f"builtins.list[{render(args[0], actor_ids)}]"
    if origin is dict:
        return f"dict[{render(args[0], actor_ids)}, {render(args[1], actor_ids)}]"
    if tp is Actor and actor_ids:
        return "common.Actor | str"
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _name(tp)
    if tp in (str, int, float, bool):
        return str(tp.__name__)
    if tp is Any:
        return "Any"
    raise TypeError(f"cannot render {tp!r}")


def _doc(cls: type[Any], indent: str) -> str:
    first = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
    lines = textwrap.wrap(first, 110 - len(indent)) or [""]
    body = f"\n{indent}".join(lines)
    return f'{indent}"""{body}"""\n' if len(lines) == 1 else f'{indent}"""{body}\n{indent}"""\n'


def _parameters(cls: type[msgspec.Struct], extra: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(`name: type = default` lines, the field names passed on)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = [f for f in msgspec.structs.fields(cls) if f.name not in COMMON]
    lines, names = [], []
    for f in fields:
        text = render(hints[f.name], actor_ids=True)
        default = f.default
        if f.required:
            lines.append(f"{f.name}: {text}")
        elif isinstance(default, bool | int | float | str):
            literal = json.dumps(default) if isinstance(default, str) else repr(default)
            lines.append(f"{f.name}: {text} = {literal}")
        else:  # None, or a struct / collection default the engine fills in when the field is left out
            lines.append(f"{f.name}: {text}{'' if 'None' in text.split(' | ') else ' | None'} = None")
        names.append(f.name)
    for name, line in extra:
        lines.append(line)
        names.append(name)
    return lines, names


def _method(name: str, params: list[str], returns: str, doc: str, call: str, is_async: bool = True) -> str:
    head = f"    {'async ' if is_async else ''}def {name}(\n        self,\n        *,\n"
    head += "".join(f"        {p},\n" for p in params)
    return f"{head}    ) -> {returns}:\n{doc}        {call}\n"


def _fields(names: list[str]) -> str:
    return "{" + ", ".join(f'"{n}": {n}' for n in names) + "}"


def _call(verb: str, cls: str, result: str, names: list[str], items: str | None = None) -> str:
    """The method's body: hand the fields to the sender (on several lines when one would be too long)."""
    start = "return " if verb == "pages" else "return await "
    tail = [json.dumps(items)] if items else []
    one = f"{start}self._sender.{verb}({', '.join([cls, result, _fields(names), *tail])})"
    if len(one) + 8 <= 130:
        return one
    fields = "{\n" + "".join(f'                "{n}": {n},\n' for n in names) + "            }"
    return f"{start}self._sender.{verb}(\n" + "".join(f"            {a},\n" for a in [cls, result, fields, *tail]) + "        )"


def _command(name: str, cls: type[Command]) -> str:
    common = [("actor", "actor: common.Actor | str | None = None"), ("command_id", "command_id: str | None = None"),
              ("correlation_id", "correlation_id: str | None = None"),
              ("causation_id", "causation_id: str | None = None")]
    params, names = _parameters(cls, common)
    result = _name(cls.RESULT)
    return _method(name.partition(".")[2], params, result, _doc(cls, "        "),
                   _call("command", _name(cls), result, names))


def _items(result: type[msgspec.Struct]) -> tuple[str, Any] | None:
    """The list field a paged result holds its items in."""
    hints = typing.get_type_hints(result)
    lists = [(f, typing.get_args(t)[0]) for f, t in hints.items() if typing.get_origin(t) is list]
    return lists[0] if len(lists) == 1 else None


def _query(name: str, cls: type[Query]) -> str:
    extra = [("min_position", "min_position: int | None = None")]
    params, names = _parameters(cls, [])
    params = [p for p in params if not p.startswith("min_position")]
    names = [n for n in names if n != "min_position"]
    params += [line for _, line in extra]
    names += [n for n, _ in extra]
    result = QUERY_RESULTS[name]
    verb = name.partition(".")[2]
    out = _method(verb, params, _name(result), _doc(cls, "        "), _call("query", _name(cls), _name(result), names))
    fields = {f.name for f in msgspec.structs.fields(cls)}
    items = _items(result)
    if {"after", "limit"} <= fields and items is not None:
        field, item = items
        doc = f'        """Every item of `{name}`, page after page, from `after` on."""\n'
        out += "\n" + _method(f"{verb}_all", params, f"AsyncIterator[{render(item)}]", doc,
                              _call("pages", _name(cls), _name(result), names, field), is_async=False)
    return out


def _class_name(head: str) -> str:
    return head.capitalize() + "Group"


def _errors() -> str:
    members = typing.get_args(AnyError)
    out = []
    for cls in members:
        code = cls.__struct_config__.tag
        details = typing.get_type_hints(cls)["details"]
        out.append(f'\n\nclass {cls.__name__}(LedgerError):\n    """The engine\'s `{code}` error."""\n\n'
                   f'    code = "{code}"\n    details: {_name(details)}\n')
    table = "".join(f'    "{c.__struct_config__.tag}": {c.__name__},\n' for c in members)
    out.append(f"\n\nERRORS: dict[str, type[LedgerError]] = {{\n{table}}}\n")
    out.append('''

def exception(error: errors.AnyError) -> LedgerError:
    """The client's exception for an error body of the protocol."""
    cls = ERRORS[str(type(error).__struct_config__.tag)]
    return cls(error.message, retryable=error.retryable, details=error.details, error=error)
''')
    return "".join(out)


def source() -> str:
    groups: dict[str, list[str]] = {}
    for name in sorted(COMMANDS):
        groups.setdefault(name.partition(".")[0], []).append(_command(name, COMMANDS[name]))
    for name in sorted(QUERIES):
        groups.setdefault(name.partition(".")[0], []).append(_query(name, QUERIES[name]))
    out = [HEADER, _errors()]
    for head, methods in groups.items():
        out.append(f'\n\nclass {_class_name(head)}(Group):\n    """`{head}.*`."""\n\n' + "\n".join(methods))
    members = "".join(f"        self.{head} = {_class_name(head)}(sender)\n" for head in groups)
    out.append(f'\n\nclass Groups:\n    """Every group of the contract, as attributes."""\n\n'
               f"    def __init__(self, sender: Sender) -> None:\n{members}")
    return "".join(out)


def main(argv: list[str]) -> int:
    text = source()
    if "--check" in argv:
        if TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run python -m agentledger.client.codegen", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
