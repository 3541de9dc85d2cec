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

``each`` may also be a workflow class (or its dotted path): each item then starts one child
instance of it (a *map over child workflows*), whose context :meth:`Map.child_context` builds
from the item and whose business key :meth:`Map.child_key` gives; at most ``in_flight``
children run at once, each child's results are its item's result, and a child that fails or
is cancelled fails its item (under the step's retry policy: a retry starts a new child). The
map step waits meanwhile, and each child's end records its item in the transaction that
records that end (:mod:`~hephaestus_django.runtime.map_children`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from hephaestus_django.core.errors import ChildContextError, MapItemError, StepDefinitionError
from hephaestus_django.core.outcomes import Async, StepResult
from hephaestus_django.core.steps import Step

if TYPE_CHECKING:
    from hephaestus_django.core.instance import Context, Instance
    from hephaestus_django.core.workflow import WorkflowDefinition

RULE_MAP_EACH = "map-each"
"""The rule id of a map whose ``each`` is neither a :class:`MapItem` class nor a workflow."""
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

    Subclasses set ``each`` (a :class:`MapItem` class, or a workflow class or its dotted path
    to start a child instance per item), may set ``in_flight`` (items in flight at once, 10 by
    default), and implement ``over(self, context)``.
    """

    events = ("completed",)
    each: ClassVar[type[MapItem] | type[WorkflowDefinition] | str | None] = None
    in_flight: ClassVar[int] = 10

    def __init_subclass__(cls, **kwargs: Any) -> None:
        _check_map(cls)  # before the step is registered: a refused class leaves no trace
        super().__init_subclass__(**kwargs)
        if MapItemError not in cls.expected_errors:
            # The map step itself is never retried as a whole: its items are, one by one.
            cls.expected_errors = (*cls.expected_errors, MapItemError)
        if is_child_map(cls) and ChildContextError not in cls.expected_errors:
            # An item whose child cannot be built fails the map at once: its code must change.
            cls.expected_errors = (*cls.expected_errors, ChildContextError)

    def over(self, context: Context) -> Sequence[Any]:
        """The items to map over, read from the instance's context at run time (a list or a
        tuple)."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement over()")

    def child_context(self, item: Any, context: Context) -> Mapping[str, Any]:
        """A map over child workflows: the context the child of ``item`` starts with; by
        default ``{"item": item}``."""
        return {"item": item}

    def child_key(self, item: Any, context: Context) -> str | None:
        """A map over child workflows: the business key of the child of ``item``: a map run
        again finds the child holding it instead of starting another. None (the default): no
        key."""
        return None

    @classmethod
    def child_workflow(cls) -> type[WorkflowDefinition]:
        """The workflow each item starts (a map over child workflows); ``UnknownWorkflowError``
        for an unknown dotted path."""
        from hephaestus_django.core.workflow import workflow_registry

        each = cls.each
        if isinstance(each, str):
            return workflow_registry.resolve(each)
        assert each is not None
        assert _is_workflow(each)
        return each  # type: ignore[return-value]

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


def is_child_map(step: type[Step]) -> bool:
    """True for a map over child workflows: its ``each`` names a workflow."""
    if not issubclass(step, Map):
        return False
    each = step.each
    return isinstance(each, str) or _is_workflow(each)


@dataclass(frozen=True, slots=True)
class StartItems(Async):
    """What a map over child workflows waits for: its items' children, which the runner starts
    in the transaction that records the wait (no timer: the last child's end ends it)."""


def _is_workflow(value: object) -> bool:
    from hephaestus_django.core.workflow import WorkflowDefinition

    return isinstance(value, type) and issubclass(value, WorkflowDefinition)


def _check_map(cls: type[Map]) -> None:
    declared = cls.__dict__.get("events")
    if declared is not None and tuple(declared) != ("completed",):
        _refuse(cls, RULE_MAP_EVENTS, "a map emits 'completed' only; declare no events")
    each = cls.each
    is_item = isinstance(each, type) and issubclass(each, MapItem) and each is not MapItem
    if not (is_item or (isinstance(each, str) and each) or _is_workflow(each)):
        _refuse(
            cls,
            RULE_MAP_EACH,
            f"each must be a MapItem subclass, or a workflow class or its dotted path (a "
            f"child instance per item), not {each!r}",
        )
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
