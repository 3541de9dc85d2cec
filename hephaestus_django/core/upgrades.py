"""Upgrading running instances of one version of a workflow to a newer one.

A newer version declares how instances of an earlier one become its own::

    class OnboardingV2(Workflow):
        version = 2
        upgrade_from = Upgrade(
            OnboardingV1,
            steps={SendWelcome: SendWelcomeEmail, LegacyCheck: None},
            context=lambda initial: {**initial, "contact": {"email": initial["email"]}},
        )

``steps`` maps each step of the old graph to its step in the new graph, or to None when the
new version drops it; a step not named maps to itself, when the new graph has it. ``context``,
if given, turns the old ``context.initial`` into the new one. ``upgrade_from`` may be a tuple
of upgrades, one per earlier version.

The map is checked when the newer class is defined, against both graphs (rule
``malformed-upgrade``, in :mod:`~hephaestus_django.core.upgrade_validation`): every old step
maps to a step of the new graph or is dropped explicitly, no two old steps map to one new
step, and the order of the steps is kept: when the old graph runs B after A (B is reachable
from A), the new graph reaches B' from A'. So an
instance that completed A and is active at B becomes one that completed A' and is active at
B', a state the new graph's join rules accept, and no step runs twice or is skipped.

:func:`upgrade` moves one instance (a pure transition, like the engine's). It refuses, with
:class:`~hephaestus_django.core.errors.UpgradeError` and nothing changed, an instance the map
does not cover: one that is active, waiting or running on a dropped step, failed at one, one
whose step waiting for its join was chosen by a dropped step, and one undoing its steps
(compensating). Ended instances (completed, failed, cancelled) are upgraded like the others,
so that an old version can be retired once none of its instances is left; they do not run
again. Steps dropped from the instance leave its history, and their results its context; the
upgrade record (:class:`~hephaestus_django.core.instance.UpgradeRecord`) names them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hephaestus_django.core.errors import UpgradeError
from hephaestus_django.core.instance import (
    Cancellation,
    Compensation,
    Context,
    Failure,
    HistoryEntry,
    Instance,
    UpgradeRecord,
    evolve,
)
from hephaestus_django.core.status import Status
from hephaestus_django.core.steps import Step

if TYPE_CHECKING:
    from hephaestus_django.core.workflow import WorkflowDefinition

StepClass = type[Step]
ContextTransform = Callable[[dict[str, Any]], Mapping[str, Any]]


class Upgrade:
    """How instances of ``from_workflow`` (an earlier version) become the declaring version's.

    ``steps`` maps old step classes to new ones (None: dropped); ``context`` turns the old
    ``context.initial`` (a dict) into the new one. Checked when the declaring class is defined.
    """

    def __init__(
        self,
        from_workflow: type[WorkflowDefinition],
        steps: Mapping[StepClass, StepClass | None] | None = None,
        context: ContextTransform | None = None,
    ) -> None:
        self.from_workflow = from_workflow
        self.steps = {} if steps is None else steps
        self.context = context
        self.mapping: dict[StepClass, StepClass | None] = {}
        """Every step of the old graph -> its new step or None; filled by the check."""

    def __repr__(self) -> str:
        name = getattr(self.from_workflow, "__qualname__", repr(self.from_workflow))
        return f"Upgrade({name}, steps={len(self.mapping or self.steps)})"

    def map(self, step: StepClass) -> StepClass | None:
        """The new step of ``step`` (None: dropped)."""
        return self.mapping.get(step)


def upgrade_for(
    instance: Instance, to: type[WorkflowDefinition]
) -> tuple[Upgrade | None, str | None]:
    """The upgrade ``to`` declares from the instance's version, or why there is none."""
    source = instance.workflow
    if source is to:
        return None, f"it is at version {to.version} already"
    for upgrade in to.__dict__.get("upgrades", ()):
        if upgrade.from_workflow is source:
            return upgrade, None
    declared = ", ".join(
        str(upgrade.from_workflow.version) for upgrade in to.__dict__.get("upgrades", ())
    )
    return None, (
        f"{to.__qualname__} declares no upgrade from {source.__qualname__} (upgrade_from "
        f"{'names versions ' + declared if declared else 'is not set'})"
    )


def upgrade_target(instance: Instance) -> type[WorkflowDefinition] | None:
    """The newest version of the instance's (versioned) workflow that declares an upgrade from
    its version; None when there is none (a plain workflow, or no newer version covers it)."""
    umbrella = instance.workflow.umbrella()
    if umbrella is None:
        return None
    candidates = [
        version
        for version in getattr(umbrella, "versions", ())
        if version.version > instance.workflow_version
        and upgrade_for(instance, version)[0] is not None
    ]
    return max(candidates, key=lambda version: version.version, default=None)


def upgrade(instance: Instance, *, to: type[WorkflowDefinition], now: datetime) -> Instance:
    """``instance`` as an instance of ``to``, by the upgrade ``to`` declares from its version.

    A pure transition: the caller stores the result (through the storage's locked ``update``).
    Raises :class:`UpgradeError` naming the instance, the versions, the step and the reason
    when the instance cannot be upgraded; nothing changes then.
    """
    plan, problem = upgrade_for(instance, to)
    if plan is None:
        raise _refuse(instance, to, problem or "no upgrade is declared")
    return _Upgrading(instance, to, plan).run(now)


def mapped_steps(
    instance: Instance, to: type[WorkflowDefinition]
) -> list[tuple[StepClass, StepClass | None]]:
    """The steps ``instance`` holds (completed, active, waiting), each with its step in ``to``
    (None: dropped), in the old graph's order: what an upgrade would do, for a confirmation."""
    plan, _problem = upgrade_for(instance, to)
    held = instance.completed_steps | instance.active_steps | instance.waiting_steps.keys()
    ordered = instance.workflow.graph.sorted(held)
    return [(step, plan.map(step) if plan is not None else None) for step in ordered]


def _refuse(
    instance: Instance, to: type[WorkflowDefinition], reason: str, step: StepClass | None = None
) -> UpgradeError:
    return UpgradeError(
        instance_id=instance.id,
        workflow=instance.workflow.path(),
        from_version=instance.workflow_version,
        to_version=to.version,
        reason=reason,
        step=None if step is None else step.__qualname__,
    )


class _Upgrading:
    """One instance being moved to the new version's steps."""

    def __init__(self, instance: Instance, to: type[WorkflowDefinition], plan: Upgrade) -> None:
        self.instance = instance
        self.to = to
        self.plan = plan

    def refuse(self, reason: str, step: StepClass | None = None) -> UpgradeError:
        return _refuse(self.instance, self.to, reason, step)

    def kept(self, step: StepClass, where: str) -> StepClass:
        """The new step of a step the instance is at; refused when it was dropped."""
        target = self.plan.map(step)
        if target is None:
            raise self.refuse(
                f"it is {where} step {step.__qualname__}, which version {self.to.version} drops",
                step,
            )
        return target

    def run(self, now: datetime) -> Instance:
        instance, plan = self.instance, self.plan
        if instance.compensating:
            raise self.refuse("it is compensating its steps; upgrade it once they are undone")
        error = self.failure(instance.error, "failed at")  # its step is still active: first
        active = frozenset(self.kept(step, "active at") for step in instance.active_steps)
        waiting = {
            self.kept(step, "waiting at"): why for step, why in instance.waiting_steps.items()
        }
        running = {self.kept(step, "running"): mark for step, mark in instance.running.items()}
        attempts = {self.kept(step, "retrying"): n for step, n in instance.attempts.items()}
        history = tuple(
            entry for entry in map(self.entry, instance.execution_history) if entry is not None
        )
        self.check_triggers(history)
        completed = frozenset(
            target for target in map(plan.map, instance.completed_steps) if target is not None
        )
        initial = self.initial()
        steps = self.results()
        dropped = {step.path(): None for step, target in plan.mapping.items() if target is None}
        renamed = {
            step.path(): target.path()
            for step, target in plan.mapping.items()
            if target is not None and target is not step
        }
        record = UpgradeRecord(
            from_version=instance.workflow_version,
            to_version=self.to.version,
            at=now,
            steps={**renamed, **dropped},
        )
        return evolve(
            instance,
            workflow=self.to,
            workflow_version=self.to.version,
            current_step=self.current(history),
            context=Context(initial, steps),
            step_configs={
                step: dict(config) for step, config in self.to.graph.configs.items() if config
            },
            active_steps=active,
            waiting_steps=waiting,
            completed_steps=completed,
            execution_history=history,
            error=error,
            attempts=attempts,
            running=running,
            cancellation=self.cancellation(),
            compensation=self.compensation(),
            upgrades=(*instance.upgrades, record),
        )

    def failure(self, failure: Failure | None, where: str) -> Failure | None:
        if failure is None:
            return None
        return Failure(
            self.kept(failure.step, where),
            failure.error_type,
            failure.message,
            failure.at,
            failure.traceback,
        )

    def entry(self, entry: HistoryEntry) -> HistoryEntry | None:
        step = self.plan.map(entry.step)
        if step is None:
            return None
        return HistoryEntry(
            step=step,
            event=entry.event,
            timestamp=entry.timestamp,
            context_updates=entry.context_updates,
            metadata_updates=entry.metadata_updates,
            next_steps=tuple(t for t in map(self.plan.map, entry.next_steps) if t is not None),
            error=None
            if entry.error is None
            else Failure(
                step,
                entry.error.error_type,
                entry.error.message,
                entry.error.at,
                entry.error.traceback,
            ),
            compensating=entry.compensating,
        )

    def check_triggers(self, history: tuple[HistoryEntry, ...]) -> None:
        """A step waiting for its join (chosen, not yet active) keeps what chose it, or it
        would never run. An instance that ended for good runs nothing again."""
        instance = self.instance
        if instance.status in (Status.COMPLETED, Status.CANCELLED):
            return
        old = {step for entry in instance.execution_history for step in entry.next_steps}
        pending = old - instance.active_steps - instance.completed_steps
        new = {step for entry in history for step in entry.next_steps}
        for step in instance.workflow.graph.sorted(pending):
            target = self.kept(step, "about to run (waiting for its join)")
            if target not in new:
                raise self.refuse(
                    f"step {step.__qualname__} waits for its join, and a step that version "
                    f"{self.to.version} drops chose it",
                    step,
                )

    def initial(self) -> dict[str, Any]:
        initial = dict(self.instance.context.initial)
        transform = self.plan.context
        if transform is None:
            return initial
        try:
            changed = transform(initial)
        except Exception as error:
            raise self.refuse(
                f"the upgrade's context function raised {type(error).__name__}: {error}"
            ) from error
        if not isinstance(changed, Mapping):
            raise self.refuse(
                f"the upgrade's context function returned {type(changed).__name__}, not a dict"
            )
        return dict(changed)

    def results(self) -> dict[str, Any]:
        """``context.steps`` with each result under its new step's key; a dropped step's result
        goes; keys no old step owns stay."""
        graph = self.instance.workflow.graph
        by_key = {step.step_key: step for step in graph.order}
        steps: dict[str, Any] = {}
        moved: dict[str, Any] = {}
        for key, value in self.instance.context.steps.items():
            step = by_key.get(key)
            if step is None:
                steps[key] = value
                continue
            target = self.plan.map(step)
            if target is not None:
                moved[target.step_key] = value
        steps.update(moved)
        return steps

    def current(self, history: tuple[HistoryEntry, ...]) -> StepClass | None:
        step = self.instance.current_step
        target = self.plan.map(step) if step is not None else None
        if target is not None:
            return target
        for entry in reversed(history):
            if entry.error is None and not entry.compensating:
                return entry.step
        return None

    def cancellation(self) -> Cancellation | None:
        found = self.instance.cancellation
        if found is None:
            return None
        steps = tuple(t for t in map(self.plan.map, found.steps) if t is not None)
        return Cancellation(found.at, found.reason, steps, found.compensate)

    def compensation(self) -> Compensation | None:
        found = self.instance.compensation
        if found is None:
            return None
        failure = self.failure(found.failure, "failed (and compensated) at")
        if found.ends is Status.FAILED and failure is None:  # pragma: no cover - guarded above
            raise self.refuse("its compensation record keeps no failure")
        return Compensation(found.ends, found.since, (), failure)
