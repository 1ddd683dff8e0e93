"""Malformed bodies for every command, generated from the msgspec command types: each field
missing, of a wrong type, a huge string, a bad id; unknown fields; bytes that are not JSON or
not an object. Every one is sent over NATS to a real engine and must get an error reply with a
stable code (never `internal`, never silence), and the log must not grow."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import msgspec.inspect as mi

from agentledger.schemas.commands import COMMANDS
from agentledger.schemas.errors import AnyError
from tests.conftest import USER, Client_, stream_messages

HUGE = "x" * 200_000
# codes a malformed body may get; decoding gives invalid_command today, and a stricter input
# check may answer earlier with another client-error code, but never internal or a timeout
CLIENT_ERRORS = {t.__struct_config__.tag for t in AnyError.__args__} - {"internal", "unavailable", "conflict"}
NOT_JSON = [b"", b"{", b"\xff\xfe\x00", b"null", b"[]", b"42", b'"text"', b"{}{}", b'{"actor": }',
            b"\x00" * 64, b"{" * 5000 + b"}" * 5000]


def _unwrap(t: mi.Type) -> mi.Type:
    return t.type if isinstance(t, mi.Metadata) else t


def valid(t: mi.Type) -> Any:
    """A value the type accepts (ids from their pattern's prefix)."""
    t = _unwrap(t)
    if isinstance(t, mi.UnionType):
        return valid(next(x for x in t.types if not isinstance(x, mi.NoneType)))
    if isinstance(t, mi.StrType):
        if t.pattern:
            prefix = re.match(r"\^([a-z]+_)", t.pattern)
            return f"{prefix.group(1)}fz" if prefix else "fz"
        return "fz"
    if isinstance(t, mi.IntType):
        return max(t.ge or 0, (t.gt or 0) + 1, 1)
    if isinstance(t, mi.BoolType):
        return True
    if isinstance(t, mi.LiteralType):
        return sorted(t.values)[0]
    if isinstance(t, mi.ListType):
        return [valid(t.item_type) for _ in range(max(t.min_length or 0, 2))]
    if isinstance(t, mi.StructType):
        if t.cls.__name__ == "Actor":
            return dict(USER)
        return {f.encode_name: valid(f.type) for f in t.fields if f.required}
    raise AssertionError(f"no example for {t}")


def wrong(t: mi.Type) -> list[Any]:
    """Values of the wrong type (or out of range) for `t`."""
    t = _unwrap(t)
    if isinstance(t, mi.UnionType):
        inner = next(x for x in t.types if not isinstance(x, mi.NoneType))
        return [v for v in wrong(inner) if v is not None]
    if isinstance(t, mi.StrType):
        bad = [123, ["a"], {"a": 1}, True, HUGE]
        if t.pattern:
            prefix = re.match(r"\^([a-z]+_)", t.pattern)
            p = prefix.group(1) if prefix else ""
            ids = ["fz", f"{p}", f"{p}a.b", f"{p}a b", f"{p}*", f"{p}>", f"{p}" + "a" * 129, f"{p}é", "xxx_fz", ""]
            bad += [x for x in ids if not re.search(t.pattern, x)]
        return bad
    if isinstance(t, mi.IntType):
        return ["1", 1.5, -1 if t.ge is not None else "x", 2**64, None, [1]]
    if isinstance(t, mi.BoolType):
        return ["true", 1, None]
    if isinstance(t, mi.LiteralType):
        return ["not-a-choice", 7, None]
    if isinstance(t, mi.ListType):
        return ["a", {"a": 1}, [], [None], None]
    if isinstance(t, mi.StructType):
        return ["a", [], 5, None, {**(valid(t) or {}), "zz_unknown": 1}]
    return [None]


def malformed(name: str) -> list[tuple[str, bytes]]:
    info = mi.type_info(COMMANDS[name])
    assert isinstance(info, mi.StructType)
    base = {f.encode_name: valid(f.type) for f in info.fields if f.required}
    cases: list[tuple[str, bytes]] = [(f"not json {i}", raw) for i, raw in enumerate(NOT_JSON)]
    cases.append(("unknown field", msgspec.json.encode({**base, "zz_unknown": HUGE})))
    for f in info.fields:
        if f.required:
            cases.append((f"missing {f.name}", msgspec.json.encode({k: v for k, v in base.items() if k != f.encode_name})))
        for i, value in enumerate(wrong(f.type)):
            if value is None and not f.required:
                continue  # null is a valid "left out" for optional fields
            cases.append((f"{f.name} wrong {i}", msgspec.json.encode({**base, f.encode_name: value})))
    return cases


async def test_every_malformed_body_gets_a_stable_error_and_appends_nothing(client: Client_) -> None:
    await client.setup_thread()  # something in the log, so a stray write would be caught appending
    before = await stream_messages(client.nc, client.config.stream)
    sent = 0
    for name in sorted(COMMANDS):
        for what, body in malformed(name):
            reply = await client.raw(f"{client.config.prefix}.cmd.{client.tenant}.{name}", body)
            sent += 1
            assert reply["ok"] is False, (name, what, reply)
            assert reply["error"]["code"] in CLIENT_ERRORS, (name, what, reply)
            assert reply["error"]["message"], (name, what, reply)
    assert await stream_messages(client.nc, client.config.stream) == before
    print(f"fuzz: {sent} malformed bodies over {len(COMMANDS)} commands, all refused, nothing appended")
    assert sent > len(COMMANDS) * len(NOT_JSON)


async def test_unknown_commands_get_a_stable_error(client: Client_) -> None:
    """(A subject naming another or a malformed tenant never reaches an engine: the broker only
    routes a tenant's own subjects.)"""
    before = await stream_messages(client.nc, client.config.stream)
    body = msgspec.json.encode({"actor": USER, "project_id": "prj_fz", "name": "p"})
    for name in ["project.nope", "nope", "project.create.extra", "session", "sandbox.report"]:
        reply = await client.raw(f"{client.config.prefix}.cmd.{client.tenant}.{name}", body)
        assert reply["ok"] is False and reply["error"]["code"] in CLIENT_ERRORS, (name, reply)
    assert await stream_messages(client.nc, client.config.stream) == before
