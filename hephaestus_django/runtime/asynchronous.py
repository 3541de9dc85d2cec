"""Running the synchronous runtime from async code, and async steps from the runtime.

The storages and runners are synchronous: a database driver call blocks, and Django's ORM
refuses to run in an event loop's thread (``SynchronousOnlyOperation``). So the ``a``-prefixed
methods of :class:`~hephaestus_django.runtime.workflow.Workflow` run their synchronous twin in a
worker thread: through asgiref's ``sync_to_async(thread_sensitive=True)`` when it is installed
(it is wherever Django is), so that every call of a request shares one thread and one database
connection, as Django's own async views do; else with ``asyncio.to_thread``.

The other way round, a step may be ``async def execute(...)`` (and ``async def compensate``):
the runner executes steps in a thread of its own, which has no event loop, and runs the
coroutine to its end there with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_sync_to_async: Any
try:
    from asgiref.sync import sync_to_async as _sync_to_async
except ImportError:  # the runtime without Django: asgiref comes with Django
    _sync_to_async = None


async def in_thread(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)``, run off the event loop (see the module's docstring)."""
    if _sync_to_async is not None:
        result: T = await _sync_to_async(function, thread_sensitive=True)(*args, **kwargs)
        return result
    return await asyncio.to_thread(function, *args, **kwargs)


def awaited(returned: T | Awaitable[T]) -> T:
    """What a step returned, its coroutine run to the end first when it is ``async def``.

    In a thread without an event loop (where runners execute steps) with ``asyncio.run``; in
    one whose loop is running (a caller who runs a runner inside a coroutine, which Django
    would refuse for its ORM anyway), on a thread of its own, since a loop cannot be entered
    twice.
    """
    if not inspect.isawaitable(returned):
        return returned
    awaitable = returned

    async def wait() -> T:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hephaestus-async-step") as pool:
        return pool.submit(asyncio.run, wait()).result()
