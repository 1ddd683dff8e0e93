"""The suite stays one a newcomer can find their way in: what test modules share lives in helper
modules (never in a `test_*.py` another module imports), and tests check what the code does
through what it exposes, never through its private attributes."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SOURCES = sorted(p for p in TESTS.rglob("*.py") if "node_modules" not in p.parts)
# Modules that must drive a library's internals (not this project's), and why.
LIBRARY_INTERNALS = {
    "test_natsfix.py": "handlers/natsfix.py patches nats-py's reader: its tests feed that reader frames",
    "test_hostile_frames.py": "a connection whose nats-py reader stops must end the engine: the reader is made to stop",
}


def test_no_module_imports_a_test_module() -> None:
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found += [f"{path.relative_to(TESTS)}:{node.lineno} imports {n}" for n in names
                      if any(part.startswith("test_") for part in n.split("."))]
    assert found == [], "move what is shared into a helper module (tests/*_support.py, tests/races/): " + str(found)


def test_no_test_reaches_into_a_private_attribute() -> None:
    found = []
    for path in SOURCES:
        if path.name in LIBRARY_INTERNALS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.endswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{path.relative_to(TESTS)}:{node.lineno} .{node.attr}")
    assert found == [], "assert on behaviour, or give the code a public accessor: " + str(found)
