"""Refuse to store an instance of a workflow no other process could find again.

A durable storage names the workflow of each row by dotted path, and a worker (or the admin,
or tomorrow's deploy) turns that path back into the class through the registry, which knows
the classes its process imported. A class defined in ``__main__``, typed into
``manage.py shell`` (stored as ``django.core.management.commands.shell.Fulfilment``) or into a
console exists in that one process only: its rows would look healthy in the admin's list and
could never run elsewhere. So the durable storage checks, before its first write of an
instance, that the class's module is one every process imports: a module with a source file,
not ``__main__``, ``builtins`` or a management command's namespace (where ``manage.py shell``
executes what is typed or piped into it).

Whether the module also holds the class under its name is not asked: a class made by a
factory in a module every process imports (a test's, or ``workflows.py`` building several
similar workflows) is registered under its path in each process, and runs anywhere.
"""

from __future__ import annotations

import sys
import weakref

from hephaestus_django.core.errors import WorkflowDefinitionError

RULE_NOT_IMPORTABLE = "not-importable"
"""The rule id of a workflow whose class cannot be found again by its dotted path."""

_checked: weakref.WeakSet[type] = weakref.WeakSet()
"""Classes found importable once: the check runs once per class, not once per write."""


def require_importable(workflow: type) -> None:
    """Raise :class:`WorkflowDefinitionError` (rule ``not-importable``) unless ``workflow``
    can be found again from its dotted path in another process."""
    if workflow in _checked:
        return
    problem = importability_problem(workflow)
    if problem is not None:
        raise WorkflowDefinitionError(
            f"{workflow.__module__}.{workflow.__qualname__}",
            RULE_NOT_IMPORTABLE,
            f"{problem}, so a worker or the admin could never load its instances; move the "
            f"class to an installed app's workflows.py (or a module it imports) and import it "
            f"from there. Instances of it can only go to an in-memory storage.",
        )
    _checked.add(workflow)


def importability_problem(workflow: type) -> str | None:
    """Why ``workflow`` cannot be found again by its dotted path, or None if it can."""
    module_name = workflow.__module__
    if module_name in ("__main__", "builtins"):
        return (
            f"the class is defined in module {module_name!r} (a script run directly, a "
            f"notebook or a console), which is a different module in every process"
        )
    if ".management.commands." in f"{module_name}.":
        return (
            f"the class was defined in the namespace of the management command "
            f"{module_name!r} (manage.py shell, or code piped into it), not by an importable "
            f"module"
        )
    module = sys.modules.get(module_name)
    if module is None:
        return f"its module {module_name!r} is not an imported module"
    if not getattr(module, "__file__", None):
        return f"its module {module_name!r} has no source file"
    return None
