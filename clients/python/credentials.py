"""Which `.creds` file a client connects with, looked up in one documented order (the first that
exists wins): the explicit argument (`--creds`), `NATS_CREDS`, the data directory found from the
working directory upwards (`.agentledger/auth/admin.creds`, what `make run` writes), then the
user's config directory (`$XDG_CONFIG_HOME/agentledger/credentials.creds`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agentledger.client.errors import CredsFileMissing

DATA_DIR = ".agentledger"
ADMIN_CREDS = Path(DATA_DIR) / "auth" / "admin.creds"
CONFIG_CREDS = Path("agentledger") / "credentials.creds"


@dataclass(frozen=True)
class Credentials:
    """The file found (None: none anywhere, so connect without), and the places the lookup goes,
    in order (for the error that says where it looked)."""

    path: Path | None
    looked: tuple[str, ...]


def data_dir(cwd: Path | None = None) -> Path | None:
    """The first `.agentledger` directory in `cwd` or any of its parents."""
    start = (cwd or Path.cwd()).resolve()
    for here in (start, *start.parents):
        if (here / DATA_DIR).is_dir():
            return here / DATA_DIR
    return None


def config_dir(env: Mapping[str, str]) -> Path:
    """`$XDG_CONFIG_HOME`, by default `~/.config`."""
    return Path(env.get("XDG_CONFIG_HOME") or Path(env.get("HOME") or Path.home()) / ".config")


def _named(path: str | os.PathLike[str], source: str) -> Path:
    """A file someone named must exist: a typo is not "no credentials"."""
    named = Path(path).expanduser()
    if not named.is_file():
        raise CredsFileMissing(named, source)
    return named


def find(explicit: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None,
         cwd: Path | None = None) -> Credentials:
    """The credentials to connect with; CredsFileMissing when a file is named that does not exist."""
    env = os.environ if env is None else env
    start = (cwd or Path.cwd()).resolve()
    user = config_dir(env) / CONFIG_CREDS
    looked = ("--creds", "NATS_CREDS", f"{ADMIN_CREDS} in {start} and its parents", str(user))
    if explicit:
        return Credentials(_named(explicit, "--creds"), looked)
    if env.get("NATS_CREDS"):
        return Credentials(_named(env["NATS_CREDS"], "NATS_CREDS"), looked)
    for here in (start, *start.parents):
        if (here / ADMIN_CREDS).is_file():
            return Credentials(here / ADMIN_CREDS, looked)
    return Credentials(user if user.is_file() else None, looked)
