"""Flow control: how many executions of a step may run at once, across every process.

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
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hephaestus_django.core.errors import ConcurrencyKeyError

if TYPE_CHECKING:
    from hephaestus_django.core.instance import Context

RULE_MALFORMED_CONCURRENCY = "malformed-concurrency"
"""The rule id of a step whose ``concurrency`` is not a sound :class:`Concurrency`."""

RULE_CONFLICTING_CONCURRENCY = "conflicting-concurrency"
"""The rule id of a step whose named limit is declared elsewhere with another number."""

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
class SlotRequest:
    """What admitting one execution of a step asks of the storage: a slot of limit ``name``
    under ``key``, which at most ``limit`` holders share."""

    name: str
    key: str
    limit: int


def limit_name(step: type[Any], declared: Concurrency) -> str:
    """The name a step's limit is kept under: its ``name``, else the step's dotted path."""
    if declared.name is not None:
        return declared.name
    return f"{step.__module__}.{step.__qualname__}"


def slot_request(step: type[Any], context: Context) -> SlotRequest | None:
    """The slot ``step`` needs to execute with ``context``; None for a step without a limit.

    :class:`ConcurrencyKeyError` (naming the step) when its key function raises or returns
    something other than a non-empty string of at most :data:`MAX_KEY_LENGTH` characters.
    """
    declared: Concurrency | None = getattr(step, "concurrency", None)
    if declared is None:
        return None
    key = NO_KEY
    if declared.key is not None:
        where = f"step {step.__qualname__}: the concurrency key function"
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
    return SlotRequest(limit_name(step, declared), key, declared.limit)


_named: dict[str, tuple[int, str]] = {}
"""Each shared limit's number, and the step that declared it first."""
_named_lock = threading.Lock()


def conflicting_declaration(step: type[Any], declared: Concurrency) -> str | None:
    """Record ``step``'s named limit; the step that declared the name with another number,
    if one did (a step defined again under its own path may change its number)."""
    if declared.name is None:
        return None
    path = f"{step.__module__}.{step.__qualname__}"
    with _named_lock:
        known = _named.get(declared.name)
        if known is not None and known[0] != declared.limit and known[1] != path:
            return known[1]
        if known is None or known[1] == path:
            _named[declared.name] = (declared.limit, path)
    return None


def named_limits() -> dict[str, int]:
    """Every limit shared by name, and its number (for the status report)."""
    with _named_lock:
        return {name: number for name, (number, _step) in _named.items()}
