"""Clients generated from docs/schema.json are good ones: the documented command
(`json2ts -i docs/schema.json -o agentledger.d.ts`, no flags) gives types that compile under
`tsc --strict`, with no duplicated types and no open index signatures, and a small client
(tests/js/usage.ts) that narrows replies on `ok` and events on `type` compiles against them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from agentledger.schemas.commands import COMMANDS
from agentledger.schemas.contract import event_types
from tests.node_tools import JS, installed

pytestmark = pytest.mark.integration  # runs json2ts and tsc in node
ROOT = Path(__file__).resolve().parent.parent


def test_generated_typescript_compiles_strict_and_narrows(tmp_path: Path) -> None:
    bin_ = installed()
    generated = tmp_path / "agentledger.d.ts"
    subprocess.run([str(bin_ / "json2ts"), "-i", str(ROOT / "docs" / "schema.json"), "-o", str(generated)],
                   check=True, capture_output=True)
    text = generated.read_text()
    names = re.findall(r"^export (?:interface|type) (\w+)", text, re.M)
    assert len(names) == len(set(names)) and not [n for n in names if re.search(r"\D\d+$", n)], names
    assert "[k: string]: unknown" not in text
    assert {"CommandReply", "StoredEvent", "Envelope", "ThreadGetReply", "EventsReadReply"} <= set(names)
    assert {f"{c.__name__}Record" for c in event_types()} | {c.__name__ for c in COMMANDS.values()} <= set(names)

    for f in ("usage.ts", "tsconfig.json"):
        shutil.copy(JS / f, tmp_path / f)
    r = subprocess.run([str(bin_ / "tsc"), "-p", str(tmp_path / "tsconfig.json"), "--strict"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
