"""Typer options derived from a request Struct's fields, and the request body built back from them.

Deriving them (rather than writing each command out) keeps the CLI in step with the protocol:
a new command or field appears here without CLI code. Mapping:

* scalars and optional scalars -> `--field-name`; a Literal becomes a choice;
* Actor -> a string such as `agt_x` whose prefix gives the kind;
* lists -> a repeatable option named in the singular (`--recipient a --recipient b`);
* nested Structs -> one option per inner field (`--summary-outcome`, `--summary-text`);
* bools -> `--flag/--no-flag`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

import msgspec
import msgspec.inspect as mi
import typer
from rich.markup import escape

from agentledger.cli.transport import PANEL
from agentledger.schemas.common import Actor

ACTOR_KINDS = {"agt_": "agent", "usr_": "user", "sys_": "system"}
ACTOR_HELP = "agt_…, usr_… or sys_… (the prefix gives the kind)"

FIELD_HELP = {
    "command_id": "idempotency key: repeating it returns the first reply",
    "correlation_id": "correlation id recorded on the event",
    "causation_id": "id of whatever caused this command, recorded on the event",
    "actor": f"who issues the command: {ACTOR_HELP}",
    "budget": "usage budget (unset: unlimited)",
    "usage": "usage consumed, counted against the budget",
    "failure_mode": "whether a failing child fails its parent (fail_fast) or not (delegate)",
    "expected_owner_version": "the owner version you last saw; refused if the session has moved on",
    "min_position": "wait until the read model has reached this log position",
    "after": "only what comes after this log position (a page's next_after)",
    "limit": "at most this many in the page",
    "sandboxes": "with --thread-id: the events of the thread's sandboxes too, each from its binding on",
}


@dataclass(frozen=True)
class FieldOption:
    """One CLI option and the place in the request body its value goes."""

    path: tuple[str, ...]
    flag: str
    actor: bool
    parameter: inspect.Parameter

    @property
    def param(self) -> str:
        return self.parameter.name


def parse_actor(text: str, option: str) -> dict[str, str]:
    for prefix, kind in ACTOR_KINDS.items():
        if text.startswith(prefix):
            return {"kind": kind, "id": text}
    raise typer.BadParameter(f"{text!r} is not an actor id: use {ACTOR_HELP}", param_hint=option)


def _unwrap(t: mi.Type) -> tuple[mi.Type, str | None, bool]:
    """(type without Metadata/None, its description, whether None is allowed)."""
    description, optional = None, False
    if isinstance(t, mi.UnionType):
        rest = [u for u in t.types if not isinstance(u, mi.NoneType)]
        optional = len(rest) < len(t.types)
        if len(rest) == 1:
            t = rest[0]
    if isinstance(t, mi.Metadata):
        description = (t.extra_json_schema or {}).get("description")
        t = t.type
    return t, description, optional


def _is_actor(t: mi.Type) -> bool:
    return isinstance(t, mi.StructType) and t.cls is Actor


def _scalar(t: mi.Type) -> Any:
    """The Python type typer parses a value as; anything unusual is passed through as a string."""
    match t:
        case mi.IntType():
            return int
        case mi.FloatType():
            return float
        case mi.BoolType():
            return bool
        case mi.LiteralType():
            return Literal[t.values]
    return str


def _help(name: str, t: mi.Type, description: str | None) -> str:
    if name in FIELD_HELP:
        return FIELD_HELP[name]
    if _is_actor(t) or (isinstance(t, mi.ListType) and _is_actor(t.item_type)):
        return ACTOR_HELP
    if description and isinstance(t, mi.StrType) and t.pattern:
        prefix = t.pattern.lstrip("^").split("[", 1)[0]
        return f"{description.split(':', 1)[0]} ({prefix}…)"
    return description or name.replace("_", " ")


def _plain_default(field: mi.Field) -> Any:
    """A scalar default worth showing in --help and passing through, or None to leave the field unset."""
    default = field.default
    if isinstance(default, bool | int | float) or (isinstance(default, str) and default):
        return default
    return None


@dataclass(frozen=True)
class Spec:
    """How one struct's fields are presented: which go to the shared panel, which read an env var."""

    common: frozenset[str] = frozenset()
    env_defaults: dict[str, tuple[str, Any]] | None = None  # field -> (envvar, default)
    unprefixed: frozenset[str] = frozenset()  # nested structs whose fields read fine on their own


def _name(path: tuple[str, ...], field: str) -> str:
    """`summary` + `text` -> `summary_text`; `sandbox` + `sandbox_id` -> `sandbox_id`, not `sandbox_sandbox_id`."""
    if path and field.startswith(path[-1] + "_"):
        path = path[:-1]
    return "_".join((*path, field))


def _options(fields: tuple[mi.Field, ...], path: tuple[str, ...], required: bool, present: bool,
             spec: Spec) -> list[FieldOption]:
    """`required`: the enclosing struct must be given; `present`: it exists even if not given (so
    its fields' defaults apply and can be passed as they are)."""
    out: list[FieldOption] = []
    for field in fields:
        t, description, _ = _unwrap(field.type)
        here = (*path, field.name)
        needed = required and field.required
        if isinstance(t, mi.LiteralType) and len(t.values) == 1 and not field.required:
            continue  # a single allowed value leaves nothing to choose
        if isinstance(t, mi.StructType) and not _is_actor(t):
            has_default = isinstance(field.default, msgspec.Struct)
            inner = path if field.name in spec.unprefixed else here
            for opt in _options(t.fields, inner, needed, present and (field.required or has_default), spec):
                out.append(opt if inner == here else replace(opt, path=(*here, *opt.path[len(inner):])))
            continue
        name = _name(path, field.name)
        is_list = isinstance(t, mi.ListType)
        item = t.item_type if isinstance(t, mi.ListType) else t
        flag = "--" + name.replace("_", "-")
        if is_list and flag.endswith("s"):
            flag = flag[:-1]
        if isinstance(t, mi.BoolType):
            flag = f"{flag}/--no-{flag[2:]}"
        actor = _is_actor(_unwrap(item)[0])
        # typer takes no list of choices: such a list is read as strings (the engine's decoder checks them)
        base = str if actor or (is_list and isinstance(_unwrap(item)[0], mi.LiteralType)) else _scalar(_unwrap(item)[0])
        annotation: Any = list[base] if is_list else base
        envvar, default = (spec.env_defaults or {}).get(name, (None, _plain_default(field) if present else None))
        needed = needed and default is None
        option = typer.Option(flag, help=escape(_help(field.name, t, description)), envvar=envvar,
                              show_default=default is not None, metavar="<actor>" if actor else None,
                              rich_help_panel=PANEL if name in spec.common else None)
        if not needed and default is None:
            annotation = annotation | None
        parameter = inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[annotation, option],
                                      default=inspect.Parameter.empty if needed else default)
        out.append(FieldOption(here, flag, actor, parameter))
    return out


def field_options(struct: type[msgspec.Struct], spec: Spec) -> list[FieldOption]:
    """Options for every field of `struct`; the shared ones are listed last."""
    info = mi.type_info(struct)
    assert isinstance(info, mi.StructType)
    options = _options(info.fields, (), True, True, spec)
    assert len({o.param for o in options}) == len(options), f"{struct.__name__}: two fields map to one option"
    return sorted(options, key=lambda o: o.param in spec.common)


def build_body(options: list[FieldOption], values: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready request body from parsed option values; unset options are left to the defaults."""
    body: dict[str, Any] = {}
    for opt in options:
        value = values.get(opt.param)
        if value is None or value == [] or value == ():
            continue
        if opt.actor:
            value = ([parse_actor(v, opt.flag) for v in value] if isinstance(value, (list, tuple))
                     else parse_actor(value, opt.flag))
        elif isinstance(value, tuple):
            value = list(value)
        node = body
        for key in opt.path[:-1]:
            node = node.setdefault(key, {})
        node[opt.path[-1]] = value
    return body
