"""Check a workflow definition against every rule of the model, and compile it.

Each rule has its own ``rule`` id on :class:`WorkflowDefinitionError` and a
message naming the workflow and the offending steps, so the error says what
to change. Rules, in the order they are checked:

``malformed-start`` / ``malformed-transitions``
    ``start_step`` is a step (and ``start``, if also given, is the same one);
    ``transitions`` maps step classes to ``{event: target}``.
``invalid-config`` / ``conflicting-config``
    a step's config passes ``Step.validate_config``, and is the same wherever
    the step is targeted.
``undeclared-event``
    every transition's event is declared by its step (a terminal step such as
    ``Done`` declares none, so it can have no transitions).
``unhandled-event``
    every declared event of a reachable step has a transition.
``dead-end``
    a step that is not terminal declares events; otherwise paths through it
    would never reach ``Done``.
``cycle``
    the graph has no cycle.
``unreachable-step``
    every step named in the transitions is reachable from ``start_step``.
``duplicate-step-key``
    no two steps share a context key.
``fan-out-not-converging``
    the branches of a fan-out meet in a common step before ``Done``.

Checked by the classes themselves, before these: ``invalid-version``, and
``malformed-retry`` (a workflow's ``default_retry``, or a step's ``retry``,
raised as :class:`StepDefinitionError` when the step class is defined, is not
a sound :class:`~hephaestus_django.core.policies.Retry`), and ``malformed-timeout``
(a step's ``timeout`` or a workflow's ``default_timeout`` is not a positive
``timedelta`` or None).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hephaestus_django.core.errors import WorkflowDefinitionError
from hephaestus_django.core.graph import (
    Route,
    StepClass,
    Transition,
    WorkflowGraph,
    descendant_map,
    find_cycle,
    postdominator_map,
    successor_map,
    topological_order,
)
from hephaestus_django.core.steps import Step, StepRef


def _names(steps: Any) -> str:
    return ", ".join(step.__qualname__ for step in steps)


class _Builder:
    """Reads the class attributes, checks them, and builds the graph."""

    def __init__(self, workflow: str) -> None:
        self.workflow = workflow
        self.configs: dict[StepClass, Mapping[str, Any]] = {}
        self.transitions: dict[tuple[StepClass, str], Transition] = {}

    def fail(self, rule: str, message: str, steps: Any = ()) -> WorkflowDefinitionError:
        return WorkflowDefinitionError(
            self.workflow, rule, message, steps=[step.__qualname__ for step in steps]
        )

    def ref(self, target: object, where: str, rule: str) -> StepRef:
        if isinstance(target, StepRef):
            ref = target
        elif isinstance(target, type) and issubclass(target, Step):
            ref = StepRef(target)
        else:
            raise self.fail(
                rule,
                f"{where} must be a Step subclass or Step.configure(...), not {target!r}",
            )
        self.add_config(ref, where)
        return ref

    def add_config(self, ref: StepRef, where: str) -> None:
        known = self.configs.get(ref.step)
        if known is None:
            try:
                ref.step.validate_config(ref.config)
            except ValueError as error:
                raise self.fail("invalid-config", f"{where}: {error}", [ref.step]) from error
            self.configs[ref.step] = ref.config
        elif dict(known) != dict(ref.config):
            raise self.fail(
                "conflicting-config",
                f"step {ref.step.__qualname__} is given config {dict(known)!r} in one place "
                f"and {dict(ref.config)!r} in {where}; a step has one config per workflow "
                f"(subclass it to use it twice)",
                [ref.step],
            )

    def add_transitions(self, spec: object) -> None:
        if not isinstance(spec, Mapping):
            raise self.fail(
                "malformed-transitions",
                f"transitions must be a dict {{Step: {{event: target}}}}, not {spec!r}",
            )
        for source, events in spec.items():
            if not (isinstance(source, type) and issubclass(source, Step)):
                raise self.fail(
                    "malformed-transitions",
                    f"transitions keys must be Step subclasses, not {source!r}",
                )
            if not isinstance(events, Mapping):
                raise self.fail(
                    "malformed-transitions",
                    f"transitions[{source.__qualname__}] must be a dict {{event: target}}, "
                    f"not {events!r}",
                    [source],
                )
            for event, target in events.items():
                self.add_transition(source, event, target)
        for source in spec:
            if source not in self.configs:
                self.add_config(StepRef(source), f"transitions[{source.__qualname__}]")

    def add_transition(self, source: StepClass, event: object, target: object) -> None:
        where = f"transitions[{source.__qualname__}][{event!r}]"
        if not isinstance(event, str) or event not in source.events:
            raise self.fail(
                "undeclared-event",
                f"{where}: step {source.__qualname__} does not declare the event {event!r} "
                f"(declared: {', '.join(source.events) or 'none'})",
                [source],
            )
        route = target if isinstance(target, Route) else None
        if route is not None:
            if not callable(route.choose):
                raise self.fail(
                    "malformed-transitions", f"{where}: Route needs a function", [source]
                )
            options: object = route.targets
        else:
            options = target
        listed = list(options) if isinstance(options, (list, tuple)) else [options]
        if not listed:
            raise self.fail("malformed-transitions", f"{where} names no target step", [source])
        steps = tuple(self.ref(item, where, "malformed-transitions").step for item in listed)
        if len(set(steps)) != len(steps):
            raise self.fail(
                "malformed-transitions", f"{where} names a step twice: {_names(steps)}", steps
            )
        self.transitions[(source, event)] = Transition(source, event, steps, route)


def build_graph(
    workflow: str, start: object, transitions: object, *, start_name: str = "start_step"
) -> WorkflowGraph:
    """Validate a definition and compile it; raises :class:`WorkflowDefinitionError`.

    ``start_name`` is the class attribute that named ``start`` (``start_step``, or the older
    ``start``), for the messages.
    """
    builder = _Builder(workflow)
    if start is None:
        raise builder.fail(
            "malformed-start", "no start step: set start_step = SomeStep in the class"
        )
    start_step = builder.ref(start, start_name, "malformed-start").step
    builder.add_transitions(transitions)
    successors = successor_map(builder.configs, builder.transitions)
    _check_events(builder, successors)
    cycle = find_cycle(successors)
    if cycle:
        raise builder.fail(
            "cycle",
            f"the transitions form a cycle {' -> '.join(s.__qualname__ for s in cycle)}; "
            f"a workflow must be acyclic",
            cycle[:-1],
        )
    order = topological_order(start_step, successors)
    unreachable = [step for step in builder.configs if step not in set(order)]
    if unreachable:
        raise builder.fail(
            "unreachable-step",
            f"steps {_names(unreachable)} cannot be reached from the start step "
            f"{start_step.__qualname__}; add a transition to them or remove them",
            unreachable,
        )
    _check_step_keys(builder, order)
    _check_convergence(builder, order, successors)
    predecessors: dict[StepClass, set[StepClass]] = {step: set() for step in order}
    for source, targets in successors.items():
        for target in targets:
            predecessors[target].add(source)
    return WorkflowGraph(
        workflow=workflow,
        start=start_step,
        order=tuple(order),
        configs=builder.configs,
        transitions=builder.transitions,
        predecessors={step: frozenset(preds) for step, preds in predecessors.items()},
        descendants=descendant_map(order, successors),
        by_path={step.path(): step for step in order},
    )


def _check_events(builder: _Builder, successors: Mapping[StepClass, Any]) -> None:
    for step in successors:
        outgoing = [event for (source, event) in builder.transitions if source is step]
        if step.terminal:
            continue
        if not step.events:
            raise builder.fail(
                "dead-end",
                f"step {step.__qualname__} declares no events and is not terminal, so paths "
                f"through it never reach Done; declare its events or subclass Done",
                [step],
            )
        missing = [event for event in step.events if event not in outgoing]
        if missing:
            raise builder.fail(
                "unhandled-event",
                f"step {step.__qualname__} declares {', '.join(map(repr, missing))} but "
                f"the transitions say nothing of where it leads",
                [step],
            )


def _check_step_keys(builder: _Builder, order: list[StepClass]) -> None:
    owners: dict[str, StepClass] = {}
    for step in order:
        other = owners.setdefault(step.step_key, step)
        if other is not step:
            raise builder.fail(
                "duplicate-step-key",
                f"steps {other.__qualname__} and {step.__qualname__} both store their result "
                f"under the context key {step.step_key!r}; set step_key on one of them",
                [other, step],
            )


def _check_convergence(
    builder: _Builder, order: list[StepClass], successors: Mapping[StepClass, Any]
) -> None:
    postdominators = postdominator_map(order, successors)
    for transition in builder.transitions.values():
        if not transition.is_fan_out:
            continue
        common = frozenset.intersection(*(postdominators[t] for t in transition.targets))
        if not any(not step.terminal for step in common):
            raise builder.fail(
                "fan-out-not-converging",
                f"the fan-out of {transition.source.__qualname__} on {transition.event!r} to "
                f"{_names(transition.targets)} does not converge before Done: every branch "
                f"must lead to one common step that joins them",
                [transition.source, *transition.targets],
            )
