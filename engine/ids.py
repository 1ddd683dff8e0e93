"""Id minting for one command. With a client command_id the ids are derived from it, so a retry
after a lost reply lands in the same boundary and is recognised there as a repeat."""

from __future__ import annotations

import hashlib
import secrets
import string

_ALPHABET = string.digits + string.ascii_lowercase


class Minter:
    def __init__(self, tenant: str, command_id: str | None) -> None:
        self._seed = f"{tenant}\x00{command_id}" if command_id else secrets.token_hex(16)
        self._count = 0

    def __call__(self, prefix: str) -> str:
        self._count += 1
        digest = hashlib.blake2b(f"{self._seed}\x00{prefix}\x00{self._count}".encode(), digest_size=16).digest()
        n = int.from_bytes(digest, "big")
        chars = []
        for _ in range(12):
            n, r = divmod(n, 36)
            chars.append(_ALPHABET[r])
        return prefix + "".join(chars)

