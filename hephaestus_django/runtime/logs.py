"""The ``extra`` fields of a log record about an instance: ``instance_id``, ``workflow``, ``step``.

Every record the runners, the worker and the job handling write about one instance carries
them, so a project can filter, index or route its log by instance (a JSON formatter puts them
in fields; ``%(instance_id)s`` works in a format string) without parsing the message. They go
through :func:`about`, so every record names them the same way: the id as text, the
workflow and the step as the dotted paths they are stored under (None where not known).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict
from uuid import UUID

if TYPE_CHECKING:
    from hephaestus_django.core.graph import StepClass
    from hephaestus_django.core.instance import Instance
    from hephaestus_django.core.workflow import WorkflowDefinition


class InstanceFields(TypedDict):
    """What ``extra=about(...)`` adds to a log record."""

    instance_id: str | None
    workflow: str | None
    step: str | None


def about(
    instance: Instance | None = None,
    *,
    step: StepClass | str | None = None,
    instance_id: UUID | str | None = None,
    workflow: type[WorkflowDefinition] | None = None,
) -> InstanceFields:
    """The ``extra`` of a log record about ``instance`` (or the ``instance_id`` and
    ``workflow`` known without it) and, where there is one, ``step`` (a class or its path)."""
    if instance is not None:
        instance_id = instance.id
        workflow = instance.workflow
    return {
        "instance_id": None if instance_id is None else str(instance_id),
        "workflow": None if workflow is None else workflow.path(),
        "step": step if step is None or isinstance(step, str) else step.path(),
    }
