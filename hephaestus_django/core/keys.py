"""Business keys: the caller's own name for an instance ("order-A-1001"), unique in a scope.

A workflow declares how unique its keys are with ``key_scope``::

    class Fulfilment(Workflow):
        key_scope = "active"      # the default

- ``"active"``: one instance per key among the workflow's unfinished instances (pending,
  running, waiting, and failed: a failed instance may be retried); once it completes or is
  cancelled, the key is free for a new one;
- ``"workflow"``: one instance per key among all of the workflow's instances, ever;
- ``"version"``: the same, per version of the workflow;
- ``"global"``: one instance per key among all instances of every workflow that says
  ``"global"``;
- ``"none"``: the key is a label to look instances up by, never unique.

Storages enforce it atomically with one unique column, the *claim*: a text naming the scope,
the workflow (and version) and the key while the instance holds the key, NULL otherwise.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from hephaestus_django.core.errors import InvalidInstanceError
from hephaestus_django.core.naming import with_article
from hephaestus_django.core.status import Status
from hephaestus_django.core.text import shown, unstorable

if TYPE_CHECKING:
    from hephaestus_django.core.instance import Instance

MAX_KEY_LENGTH = 255
"""The longest key, in characters: the ``business_key`` column's length."""
RULE_MALFORMED_KEY_SCOPE = "malformed-key-scope"
"""The rule id of a workflow whose ``key_scope`` is not one of :class:`KeyScope`."""


class KeyScope(StrEnum):
    """Among which instances a business key is unique (see the module's docstring)."""

    ACTIVE = "active"
    WORKFLOW = "workflow"
    VERSION = "version"
    GLOBAL = "global"
    NONE = "none"


FINISHED = frozenset({Status.COMPLETED, Status.CANCELLED})
"""The statuses that release a key held under the ``"active"`` scope."""


def checked_key(key: object, workflow: str) -> str:
    """``key`` if it can be a business key; ``InvalidInstanceError`` saying why not."""
    whose = f"the business key of {with_article(workflow)}"
    if not isinstance(key, str):
        raise InvalidInstanceError(
            f"{whose} must be a string, not {type(key).__name__} "
            f"({key!r}); pass e.g. key=f'order-{{order.pk}}'"
        )
    if not key or key.isspace():
        raise InvalidInstanceError(f"{whose} must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInstanceError(
            f"{whose} is {len(key)} characters long; the most is "
            f"{MAX_KEY_LENGTH} (key {key[:40]!r}…)"
        )
    problem = unstorable(key)
    if problem is not None:
        raise InvalidInstanceError(
            f"{whose} contains {problem}: {shown(key)}; remove it from the key"
        )
    return key


def key_claim(instance: Instance) -> str | None:
    """The text that makes ``instance``'s key unique in its workflow's scope while it holds
    the key; None when it holds none (no key, scope ``"none"``, or finished under
    ``"active"``). Storages keep it in a unique column."""
    key = instance.business_key
    if key is None:
        return None
    scope = instance.workflow.key_scope
    workflow = instance.workflow.path()
    if scope == KeyScope.ACTIVE:
        return None if instance.status in FINISHED else f"active|{workflow}|{key}"
    if scope == KeyScope.WORKFLOW:
        return f"workflow|{workflow}|{key}"
    if scope == KeyScope.VERSION:
        return f"version|{workflow}|{instance.workflow_version}|{key}"
    if scope == KeyScope.GLOBAL:
        return f"global|{key}"
    return None
