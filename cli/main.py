"""The console script `agentledger` (pyproject.toml: `agentledger.cli.main:main`); the command
itself is `agentledger.cli.app`."""

from __future__ import annotations

import os


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    from agentledger.cli.app import app

    app()
