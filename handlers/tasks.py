"""Ending the engine's background tasks."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def ended(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel the tasks and wait until each has ended. A loop among them must also watch a stop
    flag of its own: a request to the server cancelled just as its reply lands returns the reply
    instead of raising (`asyncio.wait_for` on Python 3.11), so a loop may not see the cancellation."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task
