"""Where a LangGraph namespace sits in a run's session tree. Pure: no I/O.

LangGraph runs a subgraph under `checkpoint_ns` `<node>:<task_id>` below its parent's namespace
(`mid:4f1c|inner:9a2e` two levels down), and numbers the namespace of every further subgraph one
task runs (`twice:4f1c|1`). A session stands for the task that runs subgraphs, so every
namespace of one task maps to one key: the namespace without its trailing numbers. The root
graph's key is `""` (the run's root session).
"""

from __future__ import annotations

import base64
import hashlib
import re

SEP = "|"
_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")


def _segments(ns: str) -> list[str]:
    return ns.split(SEP) if ns else []


def _strip(segments: list[str]) -> list[str]:
    while segments and segments[-1].isdigit():
        segments = segments[:-1]
    return segments


def key(ns: str) -> str:
    """The session key of a namespace: the same for every subgraph one task ran."""
    return SEP.join(_strip(_segments(ns)))


def parent(ns: str) -> str:
    """The key of the graph whose task runs this namespace (`""` under the root)."""
    return SEP.join(_strip(_strip(_segments(ns))[:-1]))


def depth(ns: str) -> int:
    """How many subgraph tasks deep: 0 for the root, 1 for a subgraph of the root, ..."""
    return sum(1 for s in _segments(key(ns)) if not s.isdigit())


def task(ns: str) -> tuple[str, str]:
    """(node name, task id) of the task that runs this namespace; ("", "") for the root."""
    segments = _segments(key(ns))
    if not segments:
        return "", ""
    node, _, task_id = segments[-1].rpartition(":")
    return (node, task_id) if node else (task_id, "")


def child_session_id(root_session_id: str, ns: str) -> str:
    """The ledger session of a subgraph task: derived from the run's root session and the key, so
    any process that resumes the run finds it, and a retried spawn lands on the same id."""
    digest = hashlib.sha256(f"{root_session_id}{SEP}{key(ns)}".encode()).digest()
    return "ses_lg-" + base64.b32encode(digest).decode().lower()[:24]


def agent_id(node: str, fallback: str) -> str:
    """`agt_<node>` for the node that runs a subgraph, or `fallback` when the name makes no id."""
    name = _NOT_ID.sub("-", node)[:64]
    return f"agt_{name}" if name.strip("-") else fallback


def parent_checkpoint(ns: str, checkpoint_map: dict[str, str]) -> str | None:
    """The checkpoint of the parent graph a subgraph started from (LangGraph's `checkpoint_map`
    holds one per enclosing namespace)."""
    enclosing = [k for k in checkpoint_map if k != ns and (k == "" or ns.startswith(k + SEP))]
    return str(checkpoint_map[max(enclosing, key=len)]) if enclosing else None
