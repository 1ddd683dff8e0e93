"""Agent names as ledger actors: an SDK agent named `lead` acts as `agt_lead`.

A name made only of letters, digits, `_` and `-` (at most 64 characters) is kept as it is. Any other
name is made id-safe: every other character becomes `_`, the result is cut to 55 characters and
`-` plus the first 8 hex digits of the name's SHA-256 is appended, so two names that read alike
(`Lead agent`, `Lead_agent`) stay two actors."""

from __future__ import annotations

import hashlib
import re

PREFIX = "agt_"
_SAFE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_KEEP = 55  # 55 + 1 + 8: the 64 characters an id may have after its prefix


def actor_id(name: str) -> str:
    """The actor id of the agent called `name`."""
    if _SAFE.fullmatch(name):
        return PREFIX + name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{PREFIX}{_UNSAFE.sub('_', name)[:_KEEP]}-{digest}"
