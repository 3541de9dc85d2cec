"""Bounding a step's attempt in time (``Step.timeout``), in a language that cannot kill a thread.

:func:`bounded` runs one call of a step with a time bound:

- **On a thread of its own** (the usual case): the caller waits at most the bound. If the call
  has not returned by then, the attempt is over: :class:`StepTimeout` is raised to the caller
  (the runner records it as the attempt's error, and the step's retry policy decides what
  follows), and the thread is *abandoned*. Python cannot stop it, so it runs on, as a daemon
  thread, until the call returns or raises by itself; what it returns or raises then is
  discarded and logged, never recorded. The error carries a note of where the call was when it
  overran (its stack), for the traceback in the history.
- **In the caller's thread**, when the caller is inside a database transaction: a thread of its
  own would have its own connection, outside the transaction, and would not see the caller's
  uncommitted rows (the reason ``LocalRunner`` runs steps in the caller's thread there). So the
  call runs where it would without a bound, nothing can stop waiting for it, and an overrun is
  found when it returns: the attempt then fails with :class:`StepTimeout` all the same, and its
  result (or the error it raised) is discarded.

Each timed attempt gets a new thread (a thread per attempt, not a pool: an abandoned thread
would hold a pool's slot for as long as it overran). It runs in a copy of the caller's
``contextvars`` context, as ``asyncio.to_thread`` does, so context-local settings (the active
language, a tracing span) carry over. When it ends, on time or late, the hooks given to
:func:`on_thread_exit` run in it: the Django app closes the thread's database connections
there, so neither an attempt nor an abandoned thread leaves one open (this layer does not import
Django).

Abandoned threads that are still running are counted (:func:`abandoned_attempts`); each timeout
logs how many there are in the process, so a step that keeps overrunning, and the threads
piling up behind it, show in the log long before they exhaust memory or database connections.
"""

from __future__ import annotations

import contextvars
import logging
import reprlib
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Generic, TypeVar, cast

from hephaestus_django.core.errors import StepTimeout
from hephaestus_django.core.graph import StepClass
from hephaestus_django.core.instance import Instance
from hephaestus_django.runtime.logs import about

logger = logging.getLogger("hephaestus_django.runner")

T = TypeVar("T")

_STACK_FRAMES = 20
"""How many of an overrunning call's innermost frames the timeout's note shows."""

_LATE = reprlib.Repr()
"""How a late result is shown in the log: enough to recognise it, never a whole payload."""
_LATE.maxother = _LATE.maxstring = 300  # keywords of Repr() only from Python 3.12

_exit_hooks: list[Callable[[], None]] = []
_abandoned = 0
_abandoned_lock = threading.Lock()


def bounded(
    call: Callable[[], T],
    timeout: timedelta | None,
    instance: Instance,
    step: StepClass,
    *,
    in_transaction: bool = False,
) -> T:
    """``call()``'s result, or :class:`StepTimeout` if it runs longer than ``timeout``.

    Without a ``timeout``, just ``call()``. ``instance`` and ``step`` name the attempt in the
    error and the log. With ``in_transaction`` (the caller is inside a transaction its step
    must see), the call runs in the caller's thread and an overrun is found when it returns;
    otherwise it runs on a thread of its own that is abandoned when it overruns (see the
    module's docstring).
    """
    if timeout is None:
        return call()
    if in_transaction:
        return _timed_here(call, timeout, instance, step)
    return _Attempt(call, timeout, instance, step).result()


def on_thread_exit(hook: Callable[[], None]) -> None:
    """Call ``hook()`` in every timed attempt's thread as it ends (once per hook, however often
    it is given). The Django app gives ``django.db.connections.close_all``, so that the
    thread's database connections are closed rather than left to the garbage collector."""
    if hook not in _exit_hooks:
        _exit_hooks.append(hook)


def abandoned_attempts() -> int:
    """How many attempts that overran their timeout are still running in this process."""
    with _abandoned_lock:
        return _abandoned


def _timed_here(
    call: Callable[[], T], timeout: timedelta, instance: Instance, step: StepClass
) -> T:
    """Run ``call`` in this thread; an overrun is seen, and its result discarded, once it ends."""
    started = time.monotonic()
    try:
        returned = call()
    except Exception as error:
        overran = _overran(started, timeout)
        if overran is None:
            raise
        raise _timeout(instance, step, timeout, _ran_here(overran, "raised")) from error
    overran = _overran(started, timeout)
    if overran is not None:
        raise _timeout(instance, step, timeout, _ran_here(overran, "returned"))
    return returned


def _overran(started: float, timeout: timedelta) -> timedelta | None:
    elapsed = timedelta(seconds=time.monotonic() - started)
    return elapsed if elapsed > timeout else None


def _ran_here(elapsed: timedelta, ended: str) -> str:
    return (
        f"It ran in the caller's thread, inside the caller's transaction, where it cannot be "
        f"abandoned; it {ended} after {elapsed}, and that was discarded"
    )


def _timeout(instance: Instance, step: StepClass, timeout: timedelta, note: str) -> StepTimeout:
    error = StepTimeout(
        instance_id=instance.id,
        workflow=instance.workflow.__qualname__,
        step=step.__qualname__,
        timeout=timeout,
    )
    error.add_note(note)
    return error


class _Attempt(Generic[T]):
    """One call on a daemon thread of its own, waited for at most ``timeout``.

    The thread and the waiter agree under a lock on which came first, the call's end or the
    waiter giving up: the result is either handed over or discarded, never both. The exit
    hooks run before the call counts as ended, so that a caller given the result knows the
    thread's connections are closed; closing them is part of the attempt's time.
    """

    def __init__(
        self, call: Callable[[], T], timeout: timedelta, instance: Instance, step: StepClass
    ) -> None:
        self._call = call
        self._timeout = timeout
        self._instance = instance
        self._step = step
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._finished = False
        self._abandoned_at: float | None = None
        self._returned: T | None = None
        self._raised: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run,
            args=(contextvars.copy_context(),),
            name=f"hephaestus-attempt {step.__qualname__} of {instance.id}",
            daemon=True,  # an abandoned attempt must not keep the process from exiting
        )

    def result(self) -> T:
        """What the call returned (or raise what it raised), or StepTimeout once it overran."""
        self._thread.start()
        if not self._done.wait(self._timeout.total_seconds()):
            running = None
            with self._lock:
                if not self._finished:
                    self._abandoned_at = time.monotonic()
                    running = _count_abandoned(+1)  # before the thread can end and count -1
            if running is not None:
                raise self._abandon(running)
        if self._raised is not None:
            raise self._raised
        return cast(T, self._returned)

    def _run(self, context: contextvars.Context) -> None:
        try:
            self._returned = context.run(self._call)
        except BaseException as error:  # handed to the waiter, which raises it in its thread
            self._raised = error
        finally:
            _run_exit_hooks()
            with self._lock:
                self._finished = True
                late = self._abandoned_at is not None
            self._done.set()
            if late:
                self._discard()

    def _abandon(self, running: int) -> StepTimeout:
        """The error of the overrun, noting where the call is now and how many are abandoned.

        Not logged here: the runner logs the attempt's error, with this note, as for any
        failed attempt.
        """
        return _timeout(
            self._instance,
            self._step,
            self._timeout,
            f"Abandoned on thread {self._thread.name!r}, still running ({running} abandoned "
            f"attempt(s) running in this process); when it timed out, the step was at (most "
            f"recent call last):\n{_stack_of(self._thread)}",
        )

    def _discard(self) -> None:
        """The abandoned call ended at last: say so, and what was thrown away."""
        _count_abandoned(-1)
        assert self._abandoned_at is not None
        late = timedelta(seconds=time.monotonic() - self._abandoned_at)
        if self._raised is not None:
            what = f"raised {_LATE.repr(self._raised)}"
        else:
            what = f"returned {_LATE.repr(self._returned)}"
        logger.warning(
            "step %s of instance %s (%s), abandoned after its timeout of %s, ended %s later and "
            "%s; discarded, the attempt was recorded as timed out",
            self._step.__qualname__,
            self._instance.id,
            self._instance.workflow.__qualname__,
            self._timeout,
            late,
            what,
            extra=about(self._instance, step=self._step),
        )
        self._returned = self._raised = None  # nothing keeps the late result alive


def _count_abandoned(change: int) -> int:
    """Change the count of abandoned attempts still running by ``change``; the new count."""
    global _abandoned
    with _abandoned_lock:
        _abandoned += change
        return _abandoned


def run_exit_hooks() -> None:
    """Run the hooks of :func:`on_thread_exit` in the calling thread, at the end of a thread of
    one's own that ran steps (a map's item threads do)."""
    _run_exit_hooks()


def _run_exit_hooks() -> None:
    for hook in list(_exit_hooks):
        try:
            hook()
        except Exception:  # a hook that fails must not lose the attempt's result
            logger.exception("a hook at the end of a timed attempt's thread failed")


def _stack_of(thread: threading.Thread) -> str:
    """Where ``thread`` is now, its innermost frames formatted as in a traceback."""
    frame = sys._current_frames().get(thread.ident) if thread.ident is not None else None
    if frame is None:
        return "  (the thread ended meanwhile)"
    frames = [
        summary
        for summary in traceback.extract_stack(frame)
        if summary.filename not in (__file__, threading.__file__)
    ]
    return "".join(traceback.format_list(frames[-_STACK_FRAMES:])).rstrip()
