"""Several versions of one workflow side by side, under one name.

::

    class OnboardingV1(Workflow):
        version = 1
        start_step = SendWelcome
        transitions = {...}

    class OnboardingV2(Workflow):
        version = 2
        upgrade_from = Upgrade(OnboardingV1, steps={SendWelcome: SendWelcomeEmail})
        start_step = SendWelcomeEmail
        transitions = {...}

    class Onboarding(VersionedWorkflow):
        versions = (OnboardingV1, OnboardingV2)
        current = 2          # the default: the highest

The umbrella (``Onboarding``) has no graph of its own: it names its versions and the one new
instances start on. Every version's instances are stored under the umbrella's dotted path with
their version number, and a row is decoded with the class of the version it names, so an
instance keeps running on the definition it started with while new ones start on the current
one. A plain workflow turned into an umbrella at the same path (``Onboarding`` renamed
``OnboardingV1``, and a new ``Onboarding`` naming it) keeps its stored rows readable: they name
that path and version 1.

The version classes are ordinary workflow definitions; once an umbrella names them, their
``path()`` is the umbrella's and the registry forgets their own dotted paths (rows name the
umbrella). A version class belongs to one umbrella.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from uuid import UUID

from hephaestus_django.core.errors import (
    InvalidInstanceError,
    UnknownWorkflowError,
    WorkflowDefinitionError,
)
from hephaestus_django.core.naming import dotted_path
from hephaestus_django.core.workflow import (
    WorkflowDefinition,
    check_declarations,
    checked_metadata,
    checked_tags,
    workflow_registry,
)

RULE_MALFORMED_VERSIONS = "malformed-versions"
"""The rule id of an umbrella whose ``versions`` or ``current`` are not sound."""


class VersionedDefinition(WorkflowDefinition):
    """Base class of versioned workflows: ``versions`` names the version classes, ``current``
    the version new instances start on (default: the highest).

    Checked when the class is defined (rule ``malformed-versions``): a non-empty tuple of
    concrete workflow classes with distinct ``version`` numbers, none already a version of
    another umbrella, all with the same ``key_scope`` (a business key spans the versions), and
    ``current`` one of their numbers. Users subclass
    :class:`hephaestus_django.VersionedWorkflow`, which adds the runtime's ``start()``,
    ``get()``, ``list()``, ``upgrade()``... on top of this class.
    """

    abstract = True
    versions: ClassVar[tuple[type[WorkflowDefinition], ...]] = ()
    current: ClassVar[int | None] = None
    by_version: ClassVar[Mapping[int, type[WorkflowDefinition]]] = {}
    """Each version's class, by number; built when the class is defined."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Not WorkflowDefinition's: an umbrella has no start step, transitions or graph.
        super(WorkflowDefinition, cls).__init_subclass__(**kwargs)
        check_declarations(cls)
        if cls.__dict__.get("abstract", False):
            return
        name = dotted_path(cls)
        cls.metadata = checked_metadata(name, cls.__dict__.get("metadata", {}))
        if not callable(getattr(cls, "version_for", None)):
            raise _fail(name, f"version_for must be a classmethod, not {cls.version_for!r}")
        versions = _checked_versions(cls, name)
        by_version = {version.version: version for version in versions}
        current = cls.current if cls.current is not None else max(by_version)
        if isinstance(current, bool) or current not in by_version:
            raise _fail(
                name,
                f"current = {current!r} is not one of its versions "
                f"({', '.join(map(str, sorted(by_version)))})",
            )
        scopes = {version.key_scope for version in versions}
        if len(scopes) > 1:
            listed = ", ".join(f"{v.__qualname__}: {v.key_scope!r}" for v in versions)
            raise _fail(
                name,
                f"its versions declare different key_scope ({listed}); a business key spans "
                f"the versions of a workflow, so they must agree",
                [version.__qualname__ for version in versions],
            )
        cls.versions = versions
        cls.by_version = by_version
        cls.current = current
        cls.version = current
        cls.key_scope = next(iter(scopes))
        own = checked_tags(name, cls.__dict__.get("tags", ()))
        cls.tags = tuple(dict.fromkeys([*own, *(t for v in versions for t in v.tags)]))
        for version in versions:
            workflow_registry.unregister(dotted_path(version), version)
            type.__setattr__(version, "_umbrella", cls)
        workflow_registry.register(cls)
        _check_upgrade_sources(cls, name)

    @classmethod
    def version_for(cls, context: Mapping[str, Any], **options: Any) -> int | None:
        """The version a new instance starts on when ``start()`` is given no ``version``:
        override it to choose from the context or the start options (``key``, ``metadata``,
        ``id``), e.g. a canary share or a tenant's opt-in. None (the default): ``current``.
        ``context`` is read-only; the number returned must be one of ``versions``."""
        return None

    @classmethod
    def is_abstract(cls) -> bool:
        """Only the base classes: a concrete umbrella stands for its versions."""
        return bool(cls.__dict__.get("abstract", False))

    @classmethod
    def stored_version(
        cls, version: int, *, instance_id: UUID | None = None
    ) -> type[WorkflowDefinition]:
        """The class of ``version``; ``UnknownWorkflowError`` naming the instance and the
        version when it is not one of the umbrella's."""
        found = cls.by_version.get(version)
        if found is None:
            raise UnknownWorkflowError(
                cls.path(), instance_id=instance_id, version=version, known_versions=cls.by_version
            )
        return found

    @classmethod
    def starting(cls, version: int | None = None) -> type[WorkflowDefinition]:
        """The class of ``version``, the current one by default."""
        chosen = cls.current if version is None else version
        found = cls.by_version.get(chosen) if isinstance(chosen, int) else None
        if found is None or isinstance(chosen, bool):
            known = ", ".join(map(str, sorted(cls.by_version)))
            raise InvalidInstanceError(
                f"{cls.__qualname__} has no version {version!r}; its versions are {known}"
            )
        return found

    @classmethod
    def owns(cls, workflow: type[WorkflowDefinition]) -> bool:
        """True for the umbrella's version classes."""
        return any(workflow is version for version in cls.versions)

    @classmethod
    def known_versions(cls) -> tuple[int, ...]:
        return tuple(sorted(cls.by_version))


def _fail(name: str, message: str, steps: Any = ()) -> WorkflowDefinitionError:
    return WorkflowDefinitionError(name, RULE_MALFORMED_VERSIONS, message, steps=steps)


def _checked_versions(
    cls: type[VersionedDefinition], name: str
) -> tuple[type[WorkflowDefinition], ...]:
    given = cls.__dict__.get("versions", cls.versions)
    if not isinstance(given, (tuple, list)) or not given:
        raise _fail(
            name,
            f"versions must be a non-empty tuple of workflow classes, e.g. versions = "
            f"(OnboardingV1, OnboardingV2), not {given!r}",
        )
    versions = tuple(given)
    numbers: dict[int, type[WorkflowDefinition]] = {}
    for version in versions:
        if (
            not isinstance(version, type)
            or not issubclass(version, WorkflowDefinition)
            or issubclass(version, VersionedDefinition)
            or version.is_abstract()
        ):
            raise _fail(
                name,
                f"versions must name concrete workflow classes (each with its own version "
                f"number), not {version!r}",
            )
        other = numbers.setdefault(version.version, version)
        if other is not version:
            raise _fail(
                name,
                f"{other.__qualname__} and {version.__qualname__} are both version "
                f"{version.version}; give each version class its own `version = N`",
            )
        if versions.count(version) > 1:
            raise _fail(name, f"{version.__qualname__} is named twice in versions")
        owner = version.umbrella()
        if owner is not None and dotted_path(owner) != name:
            raise _fail(
                name,
                f"{version.__qualname__} is already a version of {dotted_path(owner)}; a "
                f"version class belongs to one umbrella (subclass it to reuse its definition)",
            )
    return versions


def _check_upgrade_sources(cls: type[VersionedDefinition], name: str) -> None:
    """Every upgrade a version declares comes from an earlier version of this umbrella."""
    for version in cls.versions:
        for upgrade in getattr(version, "upgrades", ()):
            source = upgrade.from_workflow
            if not cls.owns(source) or source.version >= version.version:
                raise WorkflowDefinitionError(
                    name,
                    "malformed-upgrade",
                    f"{version.__qualname__} (version {version.version}) declares an upgrade "
                    f"from {source.__qualname__} (version {source.version}), which is not an "
                    f"earlier version of {cls.__qualname__}",
                )
