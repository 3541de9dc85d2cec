"""Map: one step that runs once per item of a list known only at run time.

::

    class ChargeLine(MapItem):
        def execute(self, item, context):
            return {"line": item["id"], "charged": charge(item["amount"])}

    class ChargeLines(Map):
        each = ChargeLine
        in_flight = 10              # at most ten items in flight

        def over(self, context):
            return context.initial["lines"]

``ChargeLines`` is a step like any other in a workflow's transitions: it emits ``completed``
once every item has run, with the items' results as a list in item order under its
``step_key``. An empty list completes at once. Each item runs under the map step's retry policy
and timeout (its own ``retry`` and ``timeout``, else the workflow's defaults); an item that
fails for good fails the step with :class:`~hephaestus_django.core.errors.MapItemError`, once
the items already in flight have ended, and no new item starts after it. ``retry()`` of the
instance runs the map again, skipping the items already done.

Why the items' results are not in the instance's state while the map runs: the state is
rewritten whole with every write of the instance, so a write per item would cost the size of
the list each, a square in all. Each item's result is written to a row of its own (the storage's
:class:`~hephaestus_django.runtime.contract.MapItems`), and the list goes into the state once,
at the join.

``each`` is a :class:`MapItem` class today. The extension point for a map over child workflows
is :func:`~hephaestus_django.runtime.maps.run_item`, which runs one item of whatever ``each``
names; a workflow class there is refused at definition (rule ``map-each``) until it is built.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from hephaestus_django.core.errors import MapItemError, StepDefinitionError
from hephaestus_django.core.outcomes import StepResult
from hephaestus_django.core.steps import Step

if TYPE_CHECKING:
    from hephaestus_django.core.instance import Context, Instance

RULE_MAP_EACH = "map-each"
"""The rule id of a map whose ``each`` is not a :class:`MapItem` class."""
RULE_MAP_IN_FLIGHT = "map-in-flight"
"""The rule id of a map whose ``in_flight`` is not a positive int."""
RULE_MAP_OVER = "map-over"
"""The rule id of a map that does not say what it maps over (``over``)."""
RULE_MAP_EVENTS = "map-events"
"""The rule id of a map that declares events of its own (it emits ``completed`` only)."""

MAX_IN_FLIGHT = 1_000
"""The most items a map may declare in flight at once: each is a thread (``LocalRunner``) or
a job and a database connection."""


class MapItem:
    """What a map runs for each item: subclass it and implement :meth:`execute`.

    ``expected_errors`` are business outcomes (a declined card): an item raising one fails
    for good at once, without the retries of the map's policy, and is logged without a
    traceback.
    """

    expected_errors: ClassVar[tuple[type[Exception], ...]] = ()

    def execute(self, item: Any, context: Context) -> Any | Awaitable[Any]:
        """Do the work for one ``item`` of the list; what it returns (JSON-storable) is the
        item's result. May be ``async def``. Runs at least once per item: make it idempotent
        (a worker may die after it and before its result is written)."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement execute()")


class Map(Step):
    """A step run once per item of the list :meth:`over` returns (see the module's docstring).

    Subclasses set ``each`` (a :class:`MapItem` class), may set ``in_flight`` (items in
    flight at once, 10 by default), and implement ``over(self, context)``.
    """

    events = ("completed",)
    each: ClassVar[type[MapItem] | None] = None
    in_flight: ClassVar[int] = 10

    def __init_subclass__(cls, **kwargs: Any) -> None:
        _check_map(cls)  # before the step is registered: a refused class leaves no trace
        super().__init_subclass__(**kwargs)
        if MapItemError not in cls.expected_errors:
            # The map step itself is never retried as a whole: its items are, one by one.
            cls.expected_errors = (*cls.expected_errors, MapItemError)

    def over(self, context: Context) -> Sequence[Any]:
        """The items to map over, read from the instance's context at run time (a list or a
        tuple)."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement over()")

    def execute(
        self, instance: Instance, config: Mapping[str, Any], context: Context
    ) -> StepResult:
        """Not called: the runners run a map's items themselves (see
        :mod:`~hephaestus_django.runtime.maps`)."""
        raise NotImplementedError(
            f"map step {type(self).__qualname__} is run by the runner, item by item; "
            f"it has no execute() of its own"
        )


def is_map(step: type[Step]) -> bool:
    """True for a :class:`Map` step: its result is a list, and its items run one by one."""
    return issubclass(step, Map)


def _check_map(cls: type[Map]) -> None:
    declared = cls.__dict__.get("events")
    if declared is not None and tuple(declared) != ("completed",):
        _refuse(cls, RULE_MAP_EVENTS, "a map emits 'completed' only; declare no events")
    each = cls.each
    if not (isinstance(each, type) and issubclass(each, MapItem)) or each is MapItem:
        _refuse(cls, RULE_MAP_EACH, f"each must be a MapItem subclass, not {each!r}")
    in_flight = cls.in_flight
    if (
        isinstance(in_flight, bool)
        or not isinstance(in_flight, int)
        or not 1 <= in_flight <= MAX_IN_FLIGHT
    ):
        _refuse(
            cls,
            RULE_MAP_IN_FLIGHT,
            f"in_flight must be an int from 1 to {MAX_IN_FLIGHT}, not {in_flight!r}",
        )
    if cls.over is Map.over or not callable(cls.over):
        _refuse(cls, RULE_MAP_OVER, "implement over(self, context) to return the items")


def _refuse(cls: type, rule: str, problem: str) -> None:
    raise StepDefinitionError(
        f"map step {cls.__qualname__}: {problem} ({rule})", step=cls.__qualname__, rule=rule
    )
