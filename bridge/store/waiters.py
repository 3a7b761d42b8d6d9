"""Handing the outcomes of store work done in a thread back to whoever waits for them."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future
from typing import Any

# who waits for a piece of work: an event loop's future, or a thread's (`run_sync`)
Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]"] | Future[Any]


def resolve(results: list[tuple[Waiter, Any, BaseException | None]]) -> None:
    """Hand every outcome of a batch to its waiter, waking each event loop once per batch rather than once
    per piece of work: under load a wake-up per request (a write to the loop's self-pipe and a pass of
    the loop) cost more than the insert it reported."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
    for waiter, value, error in results:
        if isinstance(waiter, Future):
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(value)
        else:
            loop, future = waiter
            by_loop.setdefault(loop, []).append((future, value, error))
    for loop, outcomes in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is left waiting
            loop.call_soon_threadsafe(settle, outcomes)


def settle(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, value, error in outcomes:
        if future.cancelled():
            continue  # the caller stopped waiting (a client hung up); the work itself is done or undone
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
