"""Every test is `unit` or `integration`, without its author having to say so in the common cases.

* `integration`: the test uses the shared nats-server (every fixture that starts or connects to
  it, `engine_config`, `engine`, `nc`, `client`, `tenants`, ..., depends on `nats_server`) or the
  deployment's keys (`deployment`: they exist to start servers and connect to them), directly or
  through its fixtures; or the test function itself starts a process or a server or connects to
  one (`subprocess`, `nats.connect(`, `EmbeddedNats(`, `.embedded(`, `start_cluster(`,
  `serve_process(` in its source); or its module, class or function is marked
  `pytest.mark.integration` (tests that do so through helpers of their own).
* `unit`: everything else. A unit test runs in this process only: starting a subprocess or
  opening a TCP connection while one runs fails it with a message that says what to declare, so a
  new module cannot hide in `make test-unit` (`pytest -m unit`) by accident.

conftest.py registers this module as a plugin."""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import re
import socket
import sys
from collections.abc import Generator, Iterator
from typing import Any

import pytest

# the session fixtures every nats-backed fixture depends on
INTEGRATION_FIXTURES = frozenset({"nats_server", "deployment"})
_in_unit_test: contextvars.ContextVar[str | None] = contextvars.ContextVar("in_unit_test", default=None)
# what in a test's own source starts a process or a server, or connects to one
_STARTS = re.compile("|".join((r"\bsubprocess\b", r"create_subprocess_", r"\bnats\.connect\(", r"EmbeddedNats\(",
                               r"\.embedded\(", r"start_cluster\(", r"serve_process\(")))
_SPAWNS = {"subprocess.Popen", "os.system", "os.posix_spawn", "os.spawn", "os.exec", "os.fork", "os.forkpty"}


class NotAUnitTest(RuntimeError):
    """A test classified `unit` started a process or connected to a server."""


def kind(item: pytest.Item) -> str:
    """`integration` or `unit`, from the item's markers, its fixture closure and its own source."""
    if item.get_closest_marker("integration") is not None:
        return "integration"
    if INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return "integration"
    if item.get_closest_marker("unit") is not None:  # declared: the guard holds it to that
        return "unit"
    return "integration" if _STARTS.search(_source(item)) else "unit"


def _source(item: pytest.Item) -> str:
    try:
        return inspect.getsource(getattr(item, "function", None))  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        explicit_unit = item.get_closest_marker("unit") is not None
        chosen = kind(item)
        if explicit_unit and chosen == "integration":
            raise pytest.UsageError(f"{item.nodeid} is marked unit, but its fixtures or marks make it integration")
        if not explicit_unit:
            item.add_marker(getattr(pytest.mark, chosen))


def _audit(event: str, args: tuple[Any, ...]) -> None:
    test = _in_unit_test.get()
    if test is None:
        return
    if event in _SPAWNS:
        raise NotAUnitTest(f"{test} starts a process ({event}) but is a unit test: add "
                           "`pytestmark = pytest.mark.integration` to its module (or mark the test)")
    if event == "socket.connect" and isinstance(args[0], socket.socket) and args[0].family in (socket.AF_INET,
                                                                                               socket.AF_INET6):
        raise NotAUnitTest(f"{test} connects to {args[1]} but is a unit test: add "
                           "`pytestmark = pytest.mark.integration` to its module (or mark the test)")


def pytest_configure(config: pytest.Config) -> None:
    sys.addaudithook(_audit)  # audit hooks cannot be removed; it acts only while a unit test runs


@contextlib.contextmanager
def _guarded(item: pytest.Item) -> Iterator[None]:
    token = _in_unit_test.set(item.nodeid if item.get_closest_marker("unit") is not None else None)
    try:
        yield
    finally:
        _in_unit_test.reset(token)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    with _guarded(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    with _guarded(item):
        return (yield)
