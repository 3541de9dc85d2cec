"""A workflow's steps and transitions as a graph the engine can answer questions on.

Built once per workflow class by :mod:`hephaestus_django.core.validation`;
everything the engine asks at run time (successors, predecessors, what can
still be reached) is precomputed here so transitions stay cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from hephaestus_django.core.steps import Step, StepRef

if TYPE_CHECKING:
    from hephaestus_django.core.instance import Context

StepClass = type[Step]


class Route:
    """Choose the next step at run time, from the context, among declared targets.

    ``Route(lambda context: Express if context.initial["priority"] else Standard,
    [Express, Standard])``. Exactly one target is chosen; validation treats
    every declared target as a possible successor, so the graph rules still
    hold whatever the function picks. Returning anything else fails the step.
    """

    def __init__(
        self,
        choose: Callable[[Context], StepClass | StepRef],
        targets: Sequence[StepClass | StepRef],
    ) -> None:
        self.choose = choose
        self.targets = tuple(targets)

    def __repr__(self) -> str:
        names = ", ".join(getattr(t, "__qualname__", repr(t)) for t in self.targets)
        return f"Route({getattr(self.choose, '__qualname__', self.choose)!r}, [{names}])"


@dataclass(frozen=True, slots=True)
class Transition:
    """Where ``event`` of ``source`` leads: a step, a fan-out, or a route's choices."""

    source: StepClass
    event: str
    targets: tuple[StepClass, ...]
    route: Route | None = None

    @property
    def is_fan_out(self) -> bool:
        """All targets run (a static list of several steps)."""
        return self.route is None and len(self.targets) > 1


@dataclass(frozen=True)
class WorkflowGraph:
    """The validated graph of one workflow class."""

    workflow: str
    start: StepClass
    order: tuple[StepClass, ...]
    """Every step, in a topological order (start first)."""
    configs: Mapping[StepClass, Mapping[str, Any]]
    transitions: Mapping[tuple[StepClass, str], Transition]
    predecessors: Mapping[StepClass, frozenset[StepClass]]
    descendants: Mapping[StepClass, frozenset[StepClass]]
    by_path: Mapping[str, StepClass]

    @cached_property
    def _positions(self) -> dict[StepClass, int]:
        return {step: index for index, step in enumerate(self.order)}

    def rank(self, step: StepClass) -> int:
        """Position in the topological order; sorts steps deterministically."""
        return self._positions[step]

    @cached_property
    def _sort_key(self) -> Callable[[StepClass], int]:
        """The key ``sorted`` orders by, built once: a step not in the graph sorts last."""
        positions = self._positions
        unknown = len(positions)
        return lambda step: positions.get(step, unknown)

    def sorted(self, steps: Iterable[StepClass]) -> list[StepClass]:
        """``steps`` in topological order; steps not in the graph last, as given.

        The engine sorts a handful of steps, most often one, many times per
        run; a list of fewer than two needs no key lookups.
        """
        ordered = list(steps)
        if len(ordered) > 1:
            ordered.sort(key=self._sort_key)
        return ordered

    def successors(self, step: StepClass) -> frozenset[StepClass]:
        return frozenset(target for event in step.events for target in self._targets(step, event))

    def _targets(self, step: StepClass, event: str) -> tuple[StepClass, ...]:
        transition = self.transitions.get((step, event))
        return transition.targets if transition else ()


def successor_map(
    nodes: Iterable[StepClass], transitions: Mapping[tuple[StepClass, str], Transition]
) -> dict[StepClass, list[StepClass]]:
    """Each node's possible successors, in declaration order, without repeats."""
    successors: dict[StepClass, list[StepClass]] = {node: [] for node in nodes}
    for (source, _event), transition in transitions.items():
        for target in transition.targets:
            if target not in successors[source]:
                successors[source].append(target)
    return successors


def find_cycle(successors: Mapping[StepClass, Sequence[StepClass]]) -> list[StepClass] | None:
    """One cycle as ``[a, b, ..., a]``, or None when the graph is acyclic."""
    visiting: list[StepClass] = []
    state: dict[StepClass, int] = {}  # 1 = on the current path, 2 = finished
    for root in successors:
        if state.get(root):
            continue
        stack: list[tuple[StepClass, Iterable[StepClass]]] = [(root, iter(successors[root]))]
        state[root] = 1
        visiting.append(root)
        while stack:
            node, children = stack[-1]
            child = next(iter(children), None)
            if child is None:
                stack.pop()
                visiting.pop()
                state[node] = 2
            elif state.get(child) == 1:
                return [*visiting[visiting.index(child) :], child]
            elif not state.get(child):
                state[child] = 1
                visiting.append(child)
                stack.append((child, iter(successors[child])))
    return None


def topological_order(
    start: StepClass, successors: Mapping[StepClass, Sequence[StepClass]]
) -> list[StepClass]:
    """Steps reachable from ``start``, each after all its reachable predecessors.

    The graph must be acyclic. Ties follow declaration order, so the result is
    deterministic.
    """
    # Children are visited last-declared first, so the reversed postorder lists
    # siblings in the order they were declared.
    postorder: list[StepClass] = []
    seen = {start}
    stack: list[tuple[StepClass, Iterable[StepClass]]] = [(start, reversed(successors[start]))]
    while stack:
        node, children = stack[-1]
        child = next(iter(children), None)
        if child is None:
            stack.pop()
            postorder.append(node)
        elif child not in seen:
            seen.add(child)
            stack.append((child, reversed(successors[child])))
    return postorder[::-1]


def descendant_map(
    order: Sequence[StepClass], successors: Mapping[StepClass, Sequence[StepClass]]
) -> dict[StepClass, frozenset[StepClass]]:
    """Everything reachable from each step (excluding itself)."""
    descendants: dict[StepClass, frozenset[StepClass]] = {}
    for node in reversed(order):
        reach: set[StepClass] = set()
        for child in successors[node]:
            reach.add(child)
            reach |= descendants[child]
        descendants[node] = frozenset(reach)
    return descendants


def postdominator_map(
    order: Sequence[StepClass], successors: Mapping[StepClass, Sequence[StepClass]]
) -> dict[StepClass, frozenset[StepClass]]:
    """For each step, the steps every path from it to an end passes through (itself included)."""
    postdominators: dict[StepClass, frozenset[StepClass]] = {}
    for node in reversed(order):
        children = successors[node]
        if not children:
            postdominators[node] = frozenset({node})
            continue
        common = frozenset.intersection(*(postdominators[child] for child in children))
        postdominators[node] = common | {node}
    return postdominators
