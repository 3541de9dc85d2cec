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
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

T = TypeVar("T")
C = TypeVar("C")
P = ParamSpec("P")

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


def async_twin(
    verb: Callable[Concatenate[type[C], P], T], doc: str | None = None
) -> classmethod[C, P, Coroutine[Any, Any, T]]:
    """The ``a``-prefixed twin of the classmethod ``verb``, made from it in the class body::

        astart = async_twin(start)

    The twin takes exactly the verb's arguments (its signature is the verb's, for
    ``inspect.signature``, Sphinx and the type checker alike), so the two can never drift
    apart, and runs the verb in a worker thread (:func:`in_thread`). It calls the verb by name
    on the class it is called on: a subclass that overrides the verb gets the override.
    ``doc`` is the twin's docstring (else "``verb`` from async code").
    """
    function: Callable[..., Any] = getattr(verb, "__func__", verb)
    name = function.__name__

    @functools.wraps(function)
    async def twin(cls: type[C], /, *args: P.args, **kwargs: P.kwargs) -> T:
        result: T = await in_thread(getattr(cls, name), *args, **kwargs)
        return result

    twin.__name__ = f"a{name}"
    twin.__qualname__ = f"{function.__qualname__.rpartition('.')[0]}.a{name}".lstrip(".")
    twin.__doc__ = doc or f"``{name}`` from async code (see :meth:`Workflow.astart`)."
    return classmethod(twin)


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
