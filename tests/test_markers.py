"""Each test is `unit` or `integration` (tests/markers.py), and a unit test cannot quietly start a
process or talk to a server, so `make test-unit` stays quick and needs nothing running."""

from __future__ import annotations

import asyncio
import socket
import subprocess

import pytest

from tests.markers import INTEGRATION_FIXTURES, NotAUnitTest

pytestmark = pytest.mark.unit  # these start processes and connect on purpose: to see the guard refuse them


def test_every_collected_test_is_unit_or_integration(request: pytest.FixtureRequest) -> None:
    for item in request.session.items:
        kinds = {m.name for m in item.iter_markers() if m.name in ("unit", "integration")}
        assert len(kinds) == 1, (item.nodeid, kinds)
        if INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            assert kinds == {"integration"}, item.nodeid
    assert request.node.get_closest_marker("unit") is not None


def test_a_unit_test_that_starts_a_process_fails() -> None:
    with pytest.raises(NotAUnitTest, match=r"pytestmark = pytest\.mark\.integration"):
        subprocess.run(["true"], check=True)


async def test_a_unit_test_that_starts_a_process_from_asyncio_fails() -> None:
    with pytest.raises(NotAUnitTest):
        await asyncio.create_subprocess_exec("true")


def test_a_unit_test_that_connects_fails() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with pytest.raises(NotAUnitTest, match="connects to"):
            socket.create_connection(listener.getsockname(), timeout=5).close()
