"""The definition-time check of a workflow's ``upgrade_from`` (rule ``malformed-upgrade``).

Beside :mod:`~hephaestus_django.core.validation`, which checks a workflow's own graph when its
class is defined: this checks, at the same moment, that each :class:`Upgrade` the class
declares covers the old graph and keeps its order (see :mod:`~hephaestus_django.core.upgrades`
for what an upgrade is, and how it moves an instance at run time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hephaestus_django.core.errors import WorkflowDefinitionError
from hephaestus_django.core.upgrades import StepClass, Upgrade

if TYPE_CHECKING:
    from hephaestus_django.core.workflow import WorkflowDefinition

RULE_MALFORMED_UPGRADE = "malformed-upgrade"
"""The rule id of an ``upgrade_from`` that does not cover the old graph, or breaks its order."""


def compile_upgrades(workflow: type[WorkflowDefinition], name: str) -> tuple[Upgrade, ...]:
    """The checked ``upgrade_from`` of ``workflow`` (its own, not a base class's)."""
    declared = workflow.__dict__.get("upgrade_from")
    if declared is None:
        return ()
    listed = tuple(declared) if isinstance(declared, (tuple, list)) else (declared,)
    seen: dict[int, Upgrade] = {}
    for upgrade in listed:
        if not isinstance(upgrade, Upgrade):
            raise _fail(
                name,
                f"upgrade_from must be an Upgrade(...) or a tuple of them, not {upgrade!r}",
            )
        _check(workflow, name, upgrade)
        other = seen.setdefault(upgrade.from_workflow.version, upgrade)
        if other is not upgrade:
            raise _fail(
                name,
                f"two upgrades from version {upgrade.from_workflow.version}; declare one per "
                f"earlier version",
            )
    return listed


def _fail(name: str, message: str, steps: Any = ()) -> WorkflowDefinitionError:
    return WorkflowDefinitionError(
        name, RULE_MALFORMED_UPGRADE, message, steps=[s.__qualname__ for s in steps]
    )


def _check(new: type[WorkflowDefinition], name: str, upgrade: Upgrade) -> None:
    from hephaestus_django.core.workflow import WorkflowDefinition

    old = upgrade.from_workflow
    if (
        not isinstance(old, type)
        or not issubclass(old, WorkflowDefinition)
        or old.is_abstract()
        or not hasattr(old, "graph")
    ):
        raise _fail(name, f"Upgrade(...) must name an earlier version's class, not {old!r}")
    label = f"the upgrade from {old.__qualname__} (version {old.version}) to version {new.version}"
    if old.version >= new.version:
        raise _fail(
            name,
            f"{label}: an upgrade comes from an earlier version, and {old.__qualname__} is "
            f"version {old.version}",
        )
    if upgrade.context is not None and not callable(upgrade.context):
        raise _fail(
            name,
            f"{label}: context must be a function of the old initial context, or None, not "
            f"{upgrade.context!r}",
        )
    if not isinstance(upgrade.steps, Mapping):
        raise _fail(name, f"{label}: steps must be a dict {{old step: new step or None}}")
    old_graph, new_graph = old.graph, new.graph
    for source, target in upgrade.steps.items():
        if source not in old_graph.predecessors:
            raise _fail(
                name,
                f"{label}: steps names {getattr(source, '__qualname__', source)!r}, which is not "
                f"a step of {old.__qualname__}",
            )
        if target is not None and target not in new_graph.predecessors:
            raise _fail(
                name,
                f"{label}: steps maps {source.__qualname__} to "
                f"{getattr(target, '__qualname__', target)!r}, which is not a step of "
                f"{new.__qualname__}",
                [source],
            )
    mapping: dict[StepClass, StepClass | None] = {}
    for step in old_graph.order:
        if step in upgrade.steps:
            mapping[step] = upgrade.steps[step]
        elif step in new_graph.predecessors:
            mapping[step] = step
        else:
            raise _fail(
                name,
                f"{label}: step {step.__qualname__} of {old.__qualname__} is not in "
                f"{new.__qualname__}; map it to its new step (steps={{{step.__qualname__}: "
                f"NewStep}}) or drop it (steps={{{step.__qualname__}: None}})",
                [step],
            )
    sources: dict[StepClass, StepClass] = {}
    for step, target in mapping.items():
        if target is None:
            continue
        other = sources.setdefault(target, step)
        if other is not step:
            raise _fail(
                name,
                f"{label}: steps {other.__qualname__} and {step.__qualname__} both map to "
                f"{target.__qualname__}; an old step maps to a new step of its own",
                [other, step],
            )
    for step in old_graph.order:
        after = mapping[step]
        if after is None:
            continue
        for later in old_graph.descendants[step]:
            target = mapping[later]
            if target is not None and target not in new_graph.descendants[after]:
                raise _fail(
                    name,
                    f"{label}: {old.__qualname__} runs {later.__qualname__} after "
                    f"{step.__qualname__}, but {new.__qualname__} does not reach "
                    f"{target.__qualname__} from {after.__qualname__}, so an instance between "
                    f"them would not fit the new graph; keep their order",
                    [step, later],
                )
    upgrade.mapping = mapping
