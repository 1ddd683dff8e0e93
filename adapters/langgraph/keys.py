"""Where a LangGraph checkpoint lives in the tenant's bucket: every key and subject filter the
saver uses is built here, and every key it reads is parsed here.

    c.<thread>.<ns>.<checkpoint_id>                     a checkpoint (without channel values) and its metadata
    w.<thread>.<ns>.<checkpoint_id>.<task_id>.<idx>     one pending write
    b.<thread>.<ns>.<channel>.<version>                 one channel value at one version

Each part is one token: kept as written when it is only `[A-Za-z0-9_-]`, else `=` and its
base64url (no padding), so no id can add a token or a wildcard; the root namespace `""` is `=`.
The thread is always the second token, so `*.<thread>.>` is the whole thread.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Literal

_PLAIN = re.compile(r"[A-Za-z0-9_-]+")
MAX_KEY = 1024  # far below the server's subject limits; an id this long is a caller's mistake
Kind = Literal["c", "w", "b"]
_TOKENS = {"c": 4, "w": 6, "b": 5}


def token(part: str) -> str:
    if _PLAIN.fullmatch(part):
        return part
    return "=" + base64.urlsafe_b64encode(part.encode()).decode().rstrip("=")


def untoken(tok: str) -> str:
    """The part a token stands for; ValueError for anything `token` never makes."""
    if not tok.startswith("="):
        if not _PLAIN.fullmatch(tok):
            raise ValueError(f"not a key token: {tok!r}")
        return tok
    body = tok[1:]
    try:
        part = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"not a key token: {tok!r}") from e
    if token(part) != tok:  # one spelling per part: `=YQ` for "a" is not a key the saver writes
        raise ValueError(f"not a key token: {tok!r}")
    return part


def _key(*parts: str) -> str:
    key = ".".join(parts)
    if len(key) > MAX_KEY:
        raise ValueError(f"checkpoint key longer than {MAX_KEY} characters: shorten the thread id, namespace or ids")
    return key


def checkpoint_key(thread_id: str, ns: str, checkpoint_id: str) -> str:
    return _key("c", token(thread_id), token(ns), token(checkpoint_id))


def write_key(thread_id: str, ns: str, checkpoint_id: str, task_id: str, idx: int) -> str:
    return _key("w", token(thread_id), token(ns), token(checkpoint_id), token(task_id), str(idx))


def blob_key(thread_id: str, ns: str, channel: str, version: str | int | float) -> str:
    return _key("b", token(thread_id), token(ns), token(channel), token(str(version)))


def checkpoints_filter(thread_id: str | None = None, ns: str | None = None, checkpoint_id: str | None = None) -> str:
    """Checkpoint keys of every thread, one thread, one namespace, or one id in any namespace."""
    return ".".join(("c", "*" if thread_id is None else token(thread_id), "*" if ns is None else token(ns),
                     "*" if checkpoint_id is None else token(checkpoint_id)))


def writes_filter(thread_id: str, ns: str, checkpoint_id: str) -> str:
    return ".".join(("w", token(thread_id), token(ns), token(checkpoint_id), "*", "*"))


def blobs_filter(thread_id: str, ns: str) -> str:
    return ".".join(("b", token(thread_id), token(ns), "*", "*"))


def thread_filter(thread_id: str) -> str:
    """Every key of one thread: checkpoints, writes and blobs."""
    return f"*.{token(thread_id)}.>"


@dataclass(frozen=True)
class Key:
    """A parsed key: `rest` holds the parts after the namespace (checkpoint id; checkpoint id, task
    id, index; or channel, version)."""

    kind: Kind
    thread_id: str
    ns: str
    rest: tuple[str, ...]

    @property
    def raw(self) -> str:
        return self.in_thread(self.thread_id)

    def in_thread(self, thread_id: str) -> str:
        """The same key under another thread (copying a thread)."""
        head = (self.kind, token(thread_id), token(self.ns), *(token(p) for p in self.rest))
        return _key(*head)


def parse(key: str) -> Key | None:
    """The key's parts, or None for anything the saver does not write (garbage is skipped)."""
    toks = key.split(".")
    kind = toks[0]
    if kind not in _TOKENS or len(toks) != _TOKENS[kind]:
        return None
    try:
        parts = [untoken(t) for t in toks[1:]]
        if kind == "w":
            int(parts[4])
    except ValueError:
        return None
    return Key(kind, parts[0], parts[1], tuple(parts[2:]))  # type: ignore[arg-type]
