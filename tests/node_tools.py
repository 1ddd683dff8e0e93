"""The npm tools the contract tests use (tests/js/package.json, pinned by its lock file),
installed on first use into the gitignored tests/js/node_modules, like `make test` does; the same
for any other npm package of the repository (the TypeScript client in clients/typescript)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

JS = Path(__file__).resolve().parent / "js"
BIN = JS / "node_modules" / ".bin"


def installed(package: Path = JS) -> Path:
    """The package's bin directory, after `npm ci` if the lock file changed since the last install."""
    marker = package / "node_modules" / ".package-lock.json"  # npm writes it on every install
    lock = json.loads((package / "package-lock.json").read_text())["packages"]
    wanted = {k: v.get("version") for k, v in lock.items() if k}
    have = {k: v.get("version") for k, v in json.loads(marker.read_text())["packages"].items()} if marker.exists() else {}
    if any(have.get(k) != v for k, v in wanted.items()):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=package, check=True)
    return package / "node_modules" / ".bin"


def node(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    installed()
    return subprocess.run(["node", str(JS / script), *args], capture_output=True, text=True, cwd=JS)
