"""The installed code is one namespace, `agentledger.*`, while the repository keeps one folder per
layer: nothing generic (`engine`, `cli`, ...) lands at the top level of a user's environment."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"engine": "engine", "projections": "projections", "handlers": "handlers", "schemas": "schemas", "cli": "cli",
           "adapters": "adapters", "providers": "providers",
           "client": "clients/python"}  # agentledger.<name> -> the folder it is installed from


def test_every_package_folder_is_installed_under_the_namespace() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(("agentledger", name, *init.parent.relative_to(ROOT / folder).parts))
               for name, folder in FOLDERS.items() for init in (ROOT / folder).rglob("__init__.py")}
    assert set(tool["packages"]) == on_disk  # a new sub-package must be listed, or it is not installed
    assert tool["package-dir"] == {f"agentledger.{name}": folder for name, folder in FOLDERS.items()}
    for folder in FOLDERS.values():  # PEP 561: a namespace package is typed through each of its portions
        assert (ROOT / folder / "py.typed").exists(), folder


@pytest.mark.integration  # a fresh interpreter
def test_outside_the_repository_only_the_namespace_imports(tmp_path: Path) -> None:
    probe = ("import importlib.util, agentledger.cli.main, agentledger.engine.store, agentledger.client.ledger\n"
             f"print([m for m in {[*FOLDERS, 'clients']!r} if importlib.util.find_spec(m) is not None])\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_providers_depend_on_the_schemas_only() -> None:
    """A provider is a room at the rim: it may import the contract's types, never the engine,
    the read models, the handlers or the CLI (a cloud adapter must not need them either)."""
    import ast

    for path in (ROOT / "providers").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name.startswith("agentledger."):
                    assert name.startswith(("agentledger.schemas", "agentledger.providers")), (path.name, name)
