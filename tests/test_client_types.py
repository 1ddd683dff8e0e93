"""The client is typed for a type checker: mypy --strict accepts it, and in code that uses it a
command's result, a query's result, an error's details and every event have the contract's own
types (as tests/js/usage.ts checks the TypeScript types under tsc --strict)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USAGE = '''
from typing import Literal, assert_type

from agentledger.client import Ledger, NotFound, ThreadNotEmpty
from agentledger.schemas.errors import EntityDetails, ThreadNotEmptyDetails
from agentledger.schemas.events import StoredEvent
from agentledger.schemas.queries import ThreadListResult, ThreadRow
from agentledger.schemas.replay import Replay, ReplayDiff
from agentledger.schemas.results import SessionSpawnResult, SessionStatusResult


async def usage(ledger: Ledger) -> None:
    started = await ledger.session.start(session_id="ses_a")
    assert_type(started, SessionStatusResult)
    status: Literal["idle", "active", "awaiting_hitl", "locked", "awaiting_merge", "failed", "archived"] = started.status
    assert_type(await ledger.session.spawn(parent_session_id="ses_a", agent="agt_b"), SessionSpawnResult)
    assert_type(await ledger.thread.list(), ThreadListResult)
    async for row in ledger.thread.list_all(project_id="prj_a"):
        assert_type(row, ThreadRow)
    async for event in ledger.events(thread_id="thd_a"):
        assert_type(event, StoredEvent)
    assert_type(await ledger.replay("thd_a", 3), Replay)
    assert_type(await ledger.replay("thd_a", 3, diff=5), ReplayDiff)
    try:
        await ledger.thread.archive(thread_id="thd_a")
    except ThreadNotEmpty as refused:
        assert_type(refused.details, ThreadNotEmptyDetails)
    except NotFound as missing:
        assert_type(missing.details, EntityDetails)
    print(status)
'''


def test_mypy_strict_accepts_the_client_and_sees_its_types(tmp_path: Path) -> None:
    namespace = tmp_path / "ns" / "agentledger"  # the installed layout, from the repository's folders
    namespace.mkdir(parents=True)
    folders = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in folders.items():
        (namespace / package.removeprefix("agentledger.")).symlink_to(ROOT / folder)
    docs = (ROOT / "docs" / "clients.md").read_text()
    example = re.search(r"^## Python\n.*?^```python\n(.*?)^```", docs, re.M | re.S)
    assert example is not None
    (tmp_path / "example.py").write_text(example.group(1))
    (tmp_path / "usage.py").write_text(USAGE)
    r = subprocess.run([str(Path(sys.executable).parent / "mypy"), "--strict", "--namespace-packages",
                        "--explicit-package-bases", "--follow-imports=silent", "--no-incremental",
                        str(namespace / "client"), "example.py", "usage.py"],
                       capture_output=True, text=True, cwd=tmp_path, env=os.environ | {"MYPYPATH": str(tmp_path / "ns")})
    assert r.returncode == 0, r.stdout + r.stderr
