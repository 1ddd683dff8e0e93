"""docs/clients.md: each client's complete example runs as written, on a fresh engine started the
way `make run` starts it, and prints what the page says it prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.client_support import doc_section, run_python_example

pytestmark = pytest.mark.integration  # runs an engine and the example through helpers of its own
DOC = (Path(__file__).resolve().parent.parent / "docs" / "clients.md").read_text()


async def test_the_python_example_runs_as_written(tmp_path: Path) -> None:
    await run_python_example(doc_section(DOC, "Python"), tmp_path)
