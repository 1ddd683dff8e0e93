"""The npm tools the contract tests use (tests/js/package.json, pinned by its lock file),
installed on first use into the gitignored tests/js/node_modules, like `make test` does."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

JS = Path(__file__).resolve().parent / "js"
BIN = JS / "node_modules" / ".bin"


def installed() -> Path:
    """The tools' bin directory, after `npm ci` if the lock file changed since the last install."""
    marker = JS / "node_modules" / ".package-lock.json"  # npm writes it on every install
    lock = json.loads((JS / "package-lock.json").read_text())["packages"]
    wanted = {k: v.get("version") for k, v in lock.items() if k}
    have = {k: v.get("version") for k, v in json.loads(marker.read_text())["packages"].items()} if marker.exists() else {}
    if any(have.get(k) != v for k, v in wanted.items()):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS, check=True)
    return BIN


def node(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    installed()
    return subprocess.run(["node", str(JS / script), *args], capture_output=True, text=True, cwd=JS)
