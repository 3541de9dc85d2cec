"""Flow control: how many executions of a step may run at once, and how many may start in a
window of time, across every process.

::

    class ChargeCard(Step):
        events = ("charged",)
        concurrency = Concurrency(5, name="stripe")            # 5 at once, shared by name

    class SyncTenant(Step):
        events = ("synced",)
        concurrency = Concurrency(2, key=lambda context: context.initial["tenant"])  # per tenant

A :class:`Concurrency` is a plain frozen value, checked when the step class is defined
(rule ``malformed-concurrency``; a name shared with conflicting numbers, rule
``conflicting-concurrency``), never at run time. The runtime admits an execution only while
fewer than ``limit`` executions of the same limit and key hold a slot; the others wait in
line, by priority and then age (see :mod:`hephaestus_django.runtime.slots`). The limit is read
from the code on every admission, so changing it takes effect at the next deploy.

A :class:`RateLimit` (``rate_limit = RateLimit(100, per=timedelta(minutes=1))``, on a step or
on a workflow, where it bounds starts) is kept with the same slots: an execution takes one,
holds it while it runs, and leaves it *spent* for ``per`` after it ends, so at most ``limit``
executions fall in any window of ``per`` whichever moment of them is measured (see
:mod:`hephaestus_django.runtime.slots`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from hephaestus_django.core.errors import ConcurrencyKeyError

if TYPE_CHECKING:
    from hephaestus_django.core.instance import Context

RULE_MALFORMED_CONCURRENCY = "malformed-concurrency"
"""The rule id of a step whose ``concurrency`` is not a sound :class:`Concurrency`."""

RULE_CONFLICTING_CONCURRENCY = "conflicting-concurrency"
"""The rule id of a step whose named limit is declared elsewhere with another number."""

RULE_MALFORMED_RATE_LIMIT = "malformed-rate-limit"
"""The rule id of a step or workflow whose ``rate_limit`` is not a sound :class:`RateLimit`
(or a step declaring both a concurrency and a rate limit)."""

RULE_CONFLICTING_RATE_LIMIT = "conflicting-rate-limit"
"""The rule id of a rate limit shared by name with other numbers elsewhere."""

RATE_PREFIX = "rate:"
"""How the slots of a rate limit are named in the slots table (apart from concurrency
limits of the same name)."""

RUNNING_PREFIX = "running:"
"""How the slots of a workflow's concurrency limit (a bound on its running instances) are
named in the slots table."""

NO_KEY = ""
"""The key of a limit declared without ``key``: one line for every instance."""

MAX_KEY_LENGTH = 200
"""The longest key a key function may return (it is stored with every slot)."""


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most ``limit`` executions at once of the steps declaring it, per ``key``.

    ``key`` (optional) is called with the instance's context and returns a string: the limit
    holds per value (per tenant, per customer). ``name`` (optional) shares one limit between
    several steps: every step declaring ``Concurrency(5, name="stripe")`` draws from the same
    5 slots. Without a name, the limit is the step's own (named after its dotted path).
    """

    limit: int
    key: Callable[[Context], str] | None = None
    name: str | None = None

    def problems(self) -> list[str]:
        """What is wrong with this declaration (empty when nothing is)."""
        found = []
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            found.append(f"limit must be an int of at least 1, not {self.limit!r}")
        if self.key is not None and not callable(self.key):
            found.append(f"key must be a function of the context, not {self.key!r}")
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            found.append(f"name must be a non-empty string, not {self.name!r}")
        return found


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` executions (on a workflow: starts) per window of ``per``, per ``key``.

    ``key`` and ``name`` as for :class:`Concurrency`. An execution counts from its admission
    until ``per`` after it ends: the bound holds on any moment of the executions (their
    starts, their ends), and a step that runs long in a short window gets fewer than
    ``limit`` per window. On a workflow, the execution counted is its start step's first one.
    """

    limit: int
    per: timedelta
    key: Callable[[Context], str] | None = None
    name: str | None = None

    def problems(self) -> list[str]:
        """What is wrong with this declaration (empty when nothing is)."""
        found = []
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            found.append(f"limit must be an int of at least 1, not {self.limit!r}")
        if not isinstance(self.per, timedelta) or self.per <= timedelta(0):
            found.append(f"per must be a positive timedelta, not {self.per!r}")
        if self.key is not None and not callable(self.key):
            found.append(f"key must be a function of the context, not {self.key!r}")
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            found.append(f"name must be a non-empty string, not {self.name!r}")
        return found


Limit = Concurrency | RateLimit
"""Either kind of declared limit."""


@dataclass(frozen=True, slots=True)
class SlotRequest:
    """What admitting one execution of a step asks of the storage: a slot of limit ``name``
    under ``key``, which at most ``limit`` holders share. ``per`` (a rate limit's window):
    the slot, once its execution ends, stays spent for that long instead of being freed."""

    name: str
    key: str
    limit: int
    per: timedelta | None = None


def limit_name(owner: type[Any], declared: Limit) -> str:
    """The name a limit is kept under: its ``name``, else the dotted path of the step (or
    workflow) declaring it; a rate limit's with :data:`RATE_PREFIX`."""
    name = declared.name
    if name is None:
        name = f"{owner.__module__}.{owner.__qualname__}"
    return RATE_PREFIX + name if isinstance(declared, RateLimit) else name


_limited_starts: set[type[Any]] = set()
"""The start steps of workflows declaring a limit (their first execution is a start)."""


def limit_starts(start: type[Any]) -> None:
    """Record that ``start`` begins a workflow whose starts are limited."""
    _limited_starts.add(start)


def may_be_limited(step: type[Any]) -> bool:
    """Whether an execution of ``step`` may need a slot (a cheap test before reading more)."""
    return (
        getattr(step, "concurrency", None) is not None
        or getattr(step, "rate_limit", None) is not None
        or step in _limited_starts
    )


def flow_request(
    workflow: type[Any], step: type[Any], context: Context, *, started: bool
) -> SlotRequest | None:
    """The slot an execution of ``step`` of an instance of ``workflow`` needs; None when
    nothing limits it. The first execution of the start step (``started`` False) is the
    workflow's start: its limit, if it declares one, applies (a concurrency limit's slot is
    then held until the instance ends, :func:`running_request`)."""
    if not started and step is workflow.start_step:
        request = running_request(workflow, context)
        if request is not None:
            return request
        declared_start: RateLimit | None = getattr(workflow, "rate_limit", None)
        if declared_start is not None:
            return _request(workflow, declared_start, context, f"workflow {workflow.__qualname__}")
    return slot_request(step, context)


def running_request(workflow: type[Any], context: Context) -> SlotRequest | None:
    """The slot a running instance of ``workflow`` holds under its concurrency limit; None
    without one. :class:`ConcurrencyKeyError` as for steps."""
    declared: Concurrency | None = getattr(workflow, "concurrency", None)
    if declared is None:
        return None
    request = _request(workflow, declared, context, f"workflow {workflow.__qualname__}")
    return SlotRequest(RUNNING_PREFIX + request.name, request.key, request.limit)


def slot_request(step: type[Any], context: Context) -> SlotRequest | None:
    """The slot ``step`` needs to execute with ``context``; None for a step without a limit.

    :class:`ConcurrencyKeyError` (naming the step) when its key function raises or returns
    something other than a non-empty string of at most :data:`MAX_KEY_LENGTH` characters.
    """
    declared: Limit | None = getattr(step, "concurrency", None) or getattr(step, "rate_limit", None)
    if declared is None:
        return None
    return _request(step, declared, context, f"step {step.__qualname__}")


def _request(owner: type[Any], declared: Limit, context: Context, who: str) -> SlotRequest:
    key = NO_KEY
    if declared.key is not None:
        kind = "rate limit" if isinstance(declared, RateLimit) else "concurrency"
        where = f"{who}: the {kind} key function"
        try:
            key = declared.key(context)
        except Exception as error:
            raise ConcurrencyKeyError(
                f"{where} raised {type(error).__name__}: {error}; make it return a string "
                f"for every context this step runs with"
            ) from error
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
            raise ConcurrencyKeyError(
                f"{where} returned {key!r}; it must return a non-empty string of at most "
                f"{MAX_KEY_LENGTH} characters"
            )
    per = declared.per if isinstance(declared, RateLimit) else None
    return SlotRequest(limit_name(owner, declared), key, declared.limit, per)


_named: dict[str, tuple[int, str]] = {}
"""Each shared limit's number, and the step that declared it first."""
_named_rates: dict[str, tuple[tuple[int, timedelta], str]] = {}
"""Each shared rate limit's numbers, and the step or workflow that declared it first."""
_named_lock = threading.Lock()


def conflicting_declaration(owner: type[Any], declared: Limit) -> str | None:
    """Record ``owner``'s named limit; the step (or workflow) that declared the name with
    other numbers, if one did (a class defined again under its own path may change them)."""
    if declared.name is None:
        return None
    path = f"{owner.__module__}.{owner.__qualname__}"
    with _named_lock:
        if isinstance(declared, RateLimit):
            return _conflict(_named_rates, declared.name, (declared.limit, declared.per), path)
        return _conflict(_named, declared.name, declared.limit, path)


def _conflict(table: dict[str, tuple[Any, str]], name: str, numbers: Any, path: str) -> str | None:
    known = table.get(name)
    if known is not None and known[0] != numbers and known[1] != path:
        return known[1]
    if known is None or known[1] == path:
        table[name] = (numbers, path)
    return None


def named_limits() -> dict[str, int]:
    """Every concurrency limit shared by name, and its number (for the status report)."""
    with _named_lock:
        return {name: number for name, (number, _step) in _named.items()}


def limit_problems(declared: object, attribute: str) -> list[str]:
    """What is wrong with ``declared`` as the value of ``attribute`` (``concurrency`` or
    ``rate_limit``); empty when nothing is."""
    kind = Concurrency if attribute == "concurrency" else RateLimit
    if not isinstance(declared, kind):
        return [f"{attribute} must be a {kind.__name__}(...), not {declared!r}"]
    return declared.problems()
