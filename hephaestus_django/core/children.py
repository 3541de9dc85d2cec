"""Child workflows: a step that starts an instance of another workflow and waits for its end.

Subclass :class:`Child` and name the workflow to start (a class, or its dotted path when the
class is defined later); override :meth:`Child.child_context` to build the child's context
from the parent's, and :meth:`Child.child_key` to give the child a business key. The step
waits until the child ends; the child's status becomes the step's event (``completed``,
``failed`` or ``cancelled``, each routable like any event) and the child's results (its
``context.steps``) the step's result.

Pure: ``execute`` only says what to start (:class:`StartChild`, a wait without a timer); the
runner starts the child in the transaction that records the wait, and the child's end resumes
the parent in the transaction that records that end
(:mod:`~hephaestus_django.runtime.children`).

The links live in ``runtime_metadata``: the child's :data:`PARENT_KEY` names its parent and
the step that waits for it, the parent's :data:`CHILDREN_KEY` maps each child step's
``step_key`` to the id of the child it started last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from hephaestus_django.core.errors import (
    ChildContextError,
    StepDefinitionError,
    WorkflowDefinitionError,
)
from hephaestus_django.core.outcomes import Async
from hephaestus_django.core.status import Status
from hephaestus_django.core.steps import Step

if TYPE_CHECKING:
    from hephaestus_django.core.instance import Context, Instance
    from hephaestus_django.core.workflow import WorkflowDefinition

PARENT_KEY = "hephaestus.parent"
"""Where a child's ``runtime_metadata`` names its parent: ``{"id": ..., "step": ...}``."""

CHILDREN_KEY = "hephaestus.children"
"""Where a parent's ``runtime_metadata`` maps its child steps' keys to their children's ids."""

RULE_CHILD_CYCLE = "child-cycle"
"""A workflow starts itself as a child, directly or through other workflows."""

RULE_MALFORMED_CHILD = "malformed-child"
"""A ``Child`` step names no workflow, or something that is not one."""

ENDED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
"""The statuses that end a child, each the event of the step that waits for it."""


@dataclass(frozen=True, slots=True)
class StartChild(Async):
    """What a :class:`Child` step's ``execute`` returns: wait, and have the runner start
    ``workflow`` with ``context`` (named ``key``) as this step's child."""

    workflow: type[WorkflowDefinition] | None = None
    context: Mapping[str, Any] | None = None
    key: str | None = None


@dataclass(frozen=True, slots=True)
class ParentLink:
    """The parent of a child instance, and the parent's step that waits for it."""

    id: UUID
    step: str
    """The dotted path of the parent's step."""
    item: int | None = None
    """The index of the child's item when that step is a map over child workflows."""


class Child(Step):
    """Start an instance of ``workflow`` and wait until it ends.

    ``workflow`` is a workflow class or its dotted path; ``version`` (optional) the version
    class to start instead of the workflow's current one. The step emits ``completed``,
    ``failed`` or ``cancelled`` as the child ended; its result is the child's results.
    """

    events: ClassVar[tuple[str, ...]] = ("completed", "failed", "cancelled")
    workflow: ClassVar[type[WorkflowDefinition] | str | None] = None
    version: ClassVar[type[WorkflowDefinition] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        target = cls.workflow
        if target is None:
            raise StepDefinitionError(
                f"child step {cls.__qualname__} names no workflow: set workflow = a workflow "
                f"class or its dotted path ({RULE_MALFORMED_CHILD})",
                step=cls.__qualname__,
                rule=RULE_MALFORMED_CHILD,
            )
        if not isinstance(target, str) and not _is_workflow(target):
            raise StepDefinitionError(
                f"child step {cls.__qualname__}: workflow must be a workflow class or its "
                f"dotted path, not {target!r} ({RULE_MALFORMED_CHILD})",
                step=cls.__qualname__,
                rule=RULE_MALFORMED_CHILD,
            )
        if cls.version is not None and not _is_workflow(cls.version):
            raise StepDefinitionError(
                f"child step {cls.__qualname__}: version must be a version class of the child "
                f"workflow, not {cls.version!r} ({RULE_MALFORMED_CHILD})",
                step=cls.__qualname__,
                rule=RULE_MALFORMED_CHILD,
            )

    @classmethod
    def child_workflow(cls) -> type[WorkflowDefinition]:
        """The workflow class this step starts (``UnknownWorkflowError`` for an unknown path)."""
        from hephaestus_django.core.workflow import workflow_registry

        if cls.version is not None:
            return cls.version
        target = cls.workflow
        if isinstance(target, str):
            return workflow_registry.resolve(target)
        assert target is not None
        return target

    def child_context(self, instance: Instance, context: Context) -> Mapping[str, Any]:
        """The context the child starts with; by default the parent's initial context."""
        return dict(context.initial)

    def child_key(self, instance: Instance, context: Context) -> str | None:
        """The child's business key: a parent run again finds the child holding it instead of
        starting another. None (the default): no key."""
        return None

    def execute(
        self, instance: Instance, config: Mapping[str, Any], context: Context
    ) -> StartChild:
        workflow = type(self).child_workflow()
        try:
            built = dict(self.child_context(instance, context))
            key = self.child_key(instance, context)
        except type(self).expected_errors:
            raise  # a business outcome: recorded as it is
        except Exception as error:
            raise child_context_error(
                instance, type(self), workflow, f"{type(error).__name__}: {error}"
            ) from error
        return StartChild(workflow=workflow, context=built, key=key)


def child_context_error(
    instance: Instance, step: type[Child], child: type[WorkflowDefinition], problem: str
) -> ChildContextError:
    """The error recording that ``step`` of ``instance`` could not build ``child``."""
    return ChildContextError(
        instance_id=instance.id,
        workflow=instance.workflow.__qualname__,
        step=step.__qualname__,
        child=child.__qualname__,
        problem=problem,
    )


def _is_workflow(value: object) -> bool:
    from hephaestus_django.core.workflow import WorkflowDefinition

    return isinstance(value, type) and issubclass(value, WorkflowDefinition)


def parent_of(instance: Instance) -> ParentLink | None:
    """The parent ``instance`` was started by, or None."""
    link = instance.runtime_metadata.get(PARENT_KEY)
    if not isinstance(link, Mapping):
        return None
    item = link.get("item")
    try:
        return ParentLink(
            UUID(str(link["id"])), str(link["step"]), item if isinstance(item, int) else None
        )
    except (KeyError, ValueError):
        return None


def children_of(instance: Instance) -> dict[str, UUID]:
    """The ids of the children ``instance`` started, by the ``step_key`` of their step."""
    recorded = instance.runtime_metadata.get(CHILDREN_KEY)
    if not isinstance(recorded, Mapping):
        return {}
    found = {}
    for key, value in recorded.items():
        try:
            found[str(key)] = UUID(str(value))
        except ValueError:
            continue
    return found


def child_steps(workflow: type[WorkflowDefinition]) -> Iterator[type[Child]]:
    """The ``Child`` steps of ``workflow``'s graph."""
    for step in workflow.graph.order:
        if isinstance(step, type) and issubclass(step, Child):
            yield step


def _starting_steps(
    workflow: type[WorkflowDefinition],
) -> Iterator[tuple[type[Step], str | None, Callable[[], type[WorkflowDefinition]]]]:
    """The steps of ``workflow`` that start children: each with the dotted path it names (when
    it names one) and how to resolve the workflow it starts."""
    from hephaestus_django.core.maps import Map, is_child_map

    for step in workflow.graph.order:
        if not isinstance(step, type):
            continue
        if issubclass(step, Child):
            named = step.workflow if step.version is None else None
            yield step, named if isinstance(named, str) else None, step.child_workflow
        elif issubclass(step, Map) and is_child_map(step):
            each = step.each
            yield step, each if isinstance(each, str) else None, step.child_workflow


def check_child_cycles(workflow: type[WorkflowDefinition]) -> None:
    """Refuse a workflow that starts itself, directly or through the workflows it starts.

    Targets named by a dotted path not yet defined are followed when they are known; the
    runner checks again when it starts a child.
    """
    from hephaestus_django.core.errors import UnknownWorkflowError

    own = workflow.path()
    seen: set[str] = set()
    pending: list[tuple[type[WorkflowDefinition], tuple[str, ...]]] = [(workflow, (own,))]
    while pending:
        current, trail = pending.pop()
        for step, named, resolve in _starting_steps(current):
            try:
                target = resolve()
            except UnknownWorkflowError:
                target = None
            path = named
            if target is not None:
                path = target.path()
            if path == own:
                raise WorkflowDefinitionError(
                    own,
                    RULE_CHILD_CYCLE,
                    f"step {step.__qualname__} starts {path}, and so the workflow starts itself "
                    f"({' -> '.join((*trail, path))}); a workflow may not be its own child",
                    steps=[step.__qualname__],
                )
            if target is not None and path is not None and path not in seen:
                seen.add(path)
                pending.append((target, (*trail, path)))
