"""Workflow definitions: a start step and transitions, checked when the class is defined.

::

    class Fulfilment(WorkflowDefinition):
        version = 2
        start_step = ValidateOrder
        transitions = {
            ValidateOrder: {"valid": [ReserveStock, ChargePayment], "invalid": Reject},
            ReserveStock: {"reserved": Ship},
            ChargePayment: {"charged": Ship},
            Ship: {"shipped": Done},
            Reject: {"rejected": Done},
        }

A target is a step class, ``Step.configure(**config)``, a list of those
(fan-out: all run, and must join again before ``Done``), or a
:class:`~hephaestus_django.core.graph.Route` choosing one of several at run
time. Users normally subclass :class:`hephaestus_django.Workflow`, which adds
``start()``/``resume()``/``get()``/``list()`` on top of this class.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar
from uuid import UUID

from hephaestus_django.core.errors import (
    InvalidInstanceError,
    UnknownWorkflowError,
    WorkflowDefinitionError,
)
from hephaestus_django.core.flow import (
    RULE_CONFLICTING_CONCURRENCY,
    RULE_CONFLICTING_RATE_LIMIT,
    RULE_MALFORMED_CONCURRENCY,
    RULE_MALFORMED_RATE_LIMIT,
    Concurrency,
    RateLimit,
    conflicting_declaration,
    limit_problems,
    limit_starts,
)
from hephaestus_django.core.graph import WorkflowGraph
from hephaestus_django.core.keys import RULE_MALFORMED_KEY_SCOPE, KeyScope
from hephaestus_django.core.naming import dotted_path
from hephaestus_django.core.policies import (
    RULE_MALFORMED_RETRY,
    RULE_MALFORMED_TIMEOUT,
    Retry,
    timeout_problems,
)
from hephaestus_django.core.registry import Registry
from hephaestus_django.core.steps import Step, StepRef
from hephaestus_django.core.upgrade_validation import compile_upgrades
from hephaestus_django.core.upgrades import Upgrade
from hephaestus_django.core.validation import build_graph

RULE_MALFORMED_TAGS = "malformed-tags"
"""The rule id of a workflow whose ``tags`` are not a tuple of short, non-empty strings."""
MAX_TAG_LENGTH = 64
"""The longest tag, in characters."""

RULE_MALFORMED_COMPENSATION = "malformed-compensation"
"""The rule id of a workflow whose ``compensate_on_failure`` is not a bool."""

RULE_MALFORMED_METADATA = "malformed-metadata"
"""The rule id of a workflow whose ``metadata`` is not a dict of JSON values."""

RULE_MISSPELLED_ATTRIBUTE = "misspelled-attribute"
"""The rule id of a workflow class attribute that is not one of the declarations but is close
to one (``transition`` for ``transitions``): left alone, it would be silently ignored."""

DECLARATIONS = (
    "abstract",
    "version",
    "start_step",
    "transitions",
    "default_retry",
    "default_timeout",
    "key_scope",
    "compensate_on_failure",
    "tags",
    "metadata",
    "upgrade_from",
    "versions",
    "current",
    "version_for",
)
"""The attributes a workflow class body declares, for the "did you mean" check."""

workflow_registry: Registry[type[WorkflowDefinition]] = Registry("workflow")
"""Every concrete workflow class, by dotted path."""


class WorkflowDefinition:
    """Base class of workflow definitions.

    In the class body, ``start_step`` names the start step (a step class or
    ``Step.configure(...)``), ``transitions`` maps each step to
    ``{event: target}``, and ``version`` (default 1) is written on new
    instances. Set ``abstract = True`` on an intermediate base class that is
    not a workflow by itself.

    ``start = SomeStep`` works too, and is taken out of the class so that the
    name stays free for the runtime's ``Workflow.start()``; but type checkers
    refuse it (it replaces that classmethod), so ``start_step`` is the spelling
    to use. Giving both, naming different steps, is a ``malformed-start`` error.
    Once the class is built, ``start_step`` is the start step's class (its
    config is in ``graph.configs``).
    """

    version: ClassVar[int] = 1
    default_retry: ClassVar[Retry | None] = None
    """The retry policy of the steps that declare none of their own (``Step.retry``)."""
    default_timeout: ClassVar[timedelta | None] = None
    """How long one attempt of a step may run, for the steps that declare no ``timeout`` of
    their own (``Step.timeout``)."""
    key_scope: ClassVar[str] = KeyScope.ACTIVE
    """Among which instances a business key is unique: ``"active"``, ``"workflow"``,
    ``"version"``, ``"global"`` or ``"none"`` (see :mod:`hephaestus_django.core.keys`)."""
    compensate_on_failure: ClassVar[bool] = False
    """When an instance fails, run the ``compensate`` of its completed steps (the last
    completed first), then end it failed with the error that started them."""
    metadata: ClassVar[Mapping[str, Any]] = {}
    """Facts about the workflow for people and tools (an owner, a runbook URL, a team): a dict
    with string keys and JSON values (str, int, float, bool, None, lists and dicts of them),
    checked when the class is defined and shown on the admin's instance page. Not the
    per-instance ``start(metadata=...)``, which is stored with each instance."""
    tags: ClassVar[tuple[str, ...]] = ()
    """Labels to find the workflow's instances by (``Workflow.list(tag="billing")``, the
    admin's tag filter): a tuple of short strings. A versioned workflow carries its own and
    every version's."""
    concurrency: ClassVar[Concurrency | None] = None
    """At most how many instances run at once, across every process
    (:class:`~hephaestus_django.Concurrency`, per key too): the start of the others waits in
    line, and the end of one (completed, failed, cancelled) admits the next. None: no bound."""
    rate_limit: ClassVar[RateLimit | None] = None
    """At most how many instances start per window of time, across every process
    (:class:`~hephaestus_django.RateLimit`): the first execution of the start step of the
    others waits in line until the window allows it. None: no bound."""
    upgrade_from: ClassVar[Upgrade | tuple[Upgrade, ...] | None] = None
    """How instances of earlier versions become this version's (see
    :mod:`~hephaestus_django.core.upgrades`); checked against both graphs when defined."""
    upgrades: ClassVar[tuple[Upgrade, ...]] = ()
    """The checked ``upgrade_from`` (this class's own, never a base class's)."""
    transitions: ClassVar[dict[type[Step], dict[str, Any]]] = {}
    start_step: ClassVar[type[Step] | StepRef]
    graph: ClassVar[WorkflowGraph]
    """The validated graph; built when the class is defined."""
    _start_spec: ClassVar[type[Step] | StepRef | None] = None
    _start_name: ClassVar[str] = "start_step"
    """The attribute that named the start step, for messages."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_declarations(cls)
        _take_start_spec(cls)
        if cls.__dict__.get("abstract", False):
            return
        name = dotted_path(cls)
        version = cls.version
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise WorkflowDefinitionError(
                name, "invalid-version", f"version must be a positive int, not {version!r}"
            )
        _check_default_retry(cls, name)
        problems = timeout_problems("default_timeout", cls.default_timeout)
        if problems:
            raise WorkflowDefinitionError(
                name, RULE_MALFORMED_TIMEOUT, "malformed default_timeout: " + "; ".join(problems)
            )
        scopes = [scope.value for scope in KeyScope]
        if not isinstance(cls.key_scope, str) or cls.key_scope not in scopes:
            raise WorkflowDefinitionError(
                name,
                RULE_MALFORMED_KEY_SCOPE,
                f"key_scope must be one of {', '.join(map(repr, scopes))}, not {cls.key_scope!r}",
            )
        cls.key_scope = KeyScope(cls.key_scope)
        cls.tags = checked_tags(name, cls.tags)
        cls.metadata = checked_metadata(name, cls.metadata)
        if not isinstance(cls.compensate_on_failure, bool):
            raise WorkflowDefinitionError(
                name,
                RULE_MALFORMED_COMPENSATION,
                f"compensate_on_failure must be True or False, not {cls.compensate_on_failure!r}",
            )
        cls.graph = build_graph(name, cls._start_spec, cls.transitions, start_name=cls._start_name)
        cls.start_step = cls.graph.start
        _check_limits(cls, name)
        cls.upgrades = compile_upgrades(cls, name)
        from hephaestus_django.core.children import check_child_cycles

        check_child_cycles(cls)
        workflow_registry.register(cls)

    @classmethod
    def path(cls) -> str:
        """The dotted path the workflow is stored under: a version class's is its umbrella's
        (:class:`~hephaestus_django.core.versions.VersionedDefinition`), so the instances of
        every version share one ``workflow`` column value and ``workflow_version`` tells them
        apart."""
        umbrella = cls.umbrella()
        return dotted_path(cls) if umbrella is None else umbrella.path()

    @classmethod
    def umbrella(cls) -> type[WorkflowDefinition] | None:
        """The versioned workflow this class is a version of, if any.

        Read from the class's own namespace: a subclass of a version class is not a version
        of the same umbrella unless that umbrella names it too.
        """
        umbrella: type[WorkflowDefinition] | None = cls.__dict__.get("_umbrella")
        return umbrella

    @classmethod
    def is_abstract(cls) -> bool:
        """True for base classes that are not workflows by themselves."""
        return bool(cls.__dict__.get("abstract", False)) or not hasattr(cls, "graph")

    @classmethod
    def stored_version(
        cls, version: int, *, instance_id: UUID | None = None
    ) -> type[WorkflowDefinition]:
        """The class that runs a stored instance of this workflow at ``version``.

        A plain workflow's one class runs every version number its rows carry (as it always
        did); a versioned workflow answers with that version's class, or
        ``UnknownWorkflowError`` naming the instance and the version.
        """
        return cls

    @classmethod
    def starting(cls, version: int | None = None) -> type[WorkflowDefinition]:
        """The class a new instance starts on: this one; ``version``, if given, must be its
        own (a versioned workflow chooses among its versions, the current one by default)."""
        if version is not None and version != cls.version:
            raise InvalidInstanceError(
                f"{cls.__qualname__} is version {cls.version} and has no other; to run several "
                f"versions side by side, name them in a VersionedWorkflow"
            )
        return cls

    @classmethod
    def owns(cls, workflow: type[WorkflowDefinition]) -> bool:
        """Whether instances of ``workflow`` are this workflow's, for the facade's checks
        (``Onboarding.get(id)`` refuses another workflow's instance): a subclass of this one,
        or, for a versioned workflow, one of its versions."""
        return issubclass(workflow, cls)

    @classmethod
    def known_versions(cls) -> tuple[int, ...]:
        """The version numbers registered for this workflow: its own, or its versions'."""
        return (cls.version,)


def checked_tags(name: str, tags: object) -> tuple[str, ...]:
    """``tags`` if they are a tuple (or list) of non-empty strings of at most
    :data:`MAX_TAG_LENGTH` characters, without repeats; ``WorkflowDefinitionError`` (rule
    ``malformed-tags``) saying what is wrong otherwise."""
    if not isinstance(tags, (tuple, list)):
        raise WorkflowDefinitionError(
            name,
            RULE_MALFORMED_TAGS,
            f"tags must be a tuple of strings, e.g. tags = ('billing', 'eu'), not {tags!r}",
        )
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG_LENGTH:
            raise WorkflowDefinitionError(
                name,
                RULE_MALFORMED_TAGS,
                f"each tag must be a non-empty string of at most {MAX_TAG_LENGTH} characters, "
                f"not {tag!r}",
            )
    return tuple(dict.fromkeys(tags))


def check_declarations(cls: type) -> None:
    """Refuse an attribute of the class body that is not a known name but close to a
    declaration (rule ``misspelled-attribute``): ``transition = {...}`` would otherwise be
    ignored, and the error would be about the missing ``transitions``, not the typo. The
    package's own base classes (which declare new names) are not checked."""
    if cls.__module__.split(".", 1)[0] == "hephaestus_django":
        return
    known = {name for base in cls.__mro__[1:] for name in vars(base)}
    for attribute in cls.__dict__:
        if attribute.startswith("__") or attribute in known or attribute in DECLARATIONS:
            continue
        close = difflib.get_close_matches(attribute, DECLARATIONS, n=1, cutoff=0.8)
        if close:
            raise WorkflowDefinitionError(
                dotted_path(cls),
                RULE_MISSPELLED_ATTRIBUTE,
                f"unknown class attribute {attribute!r}: did you mean {close[0]!r}? "
                f"(a workflow reads only {', '.join(DECLARATIONS)})",
            )


def checked_metadata(name: str, metadata: object) -> Mapping[str, Any]:
    """``metadata`` if it is a dict with string keys and JSON values; a
    ``WorkflowDefinitionError`` (rule ``malformed-metadata``) naming the bad part otherwise."""
    if not isinstance(metadata, Mapping):
        raise WorkflowDefinitionError(
            name,
            RULE_MALFORMED_METADATA,
            f"metadata must be a dict, e.g. metadata = {{'owner': 'billing'}}, not {metadata!r}",
        )
    problem = _json_problem(metadata, "metadata", 0)
    if problem:
        raise WorkflowDefinitionError(name, RULE_MALFORMED_METADATA, problem)
    return dict(metadata)


def _json_problem(value: object, path: str, depth: int) -> str | None:
    """Why ``value`` is not plain JSON (str, int, finite float, bool, None, lists and dicts
    with string keys), naming where; None when it is."""
    if depth > 20:
        return f"{path} is nested more than 20 levels deep"
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value!r}, which JSON cannot hold"
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _json_problem(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has the key {key!r}; keys must be strings"
            found = _json_problem(item, f"{path}[{key!r}]", depth + 1)
            if found:
                return found
        return None
    return (
        f"{path} is {value!r} ({type(value).__name__}); metadata holds JSON values only: "
        f"str, int, float, bool, None, lists and dicts of them"
    )


def tagged(tag: str) -> list[str]:
    """The dotted paths of the registered workflows carrying ``tag`` (what a query by tag
    selects: no column holds tags, the registry knows them)."""
    found = []
    for path in workflow_registry.names():
        try:
            workflow = workflow_registry.resolve(path)
        except UnknownWorkflowError:  # pragma: no cover - collected between names() and here
            continue
        if tag in workflow.tags:
            found.append(path)
    return found


def resolve_workflow(
    path: str, version: int, *, instance_id: UUID | None = None
) -> type[WorkflowDefinition]:
    """The class that runs a stored instance naming ``path`` at ``version``, through the
    registry only; ``UnknownWorkflowError`` when either is not registered."""
    return workflow_registry.resolve(path, instance_id=instance_id).stored_version(
        version, instance_id=instance_id
    )


def _check_default_retry(cls: type[WorkflowDefinition], name: str) -> None:
    policy = cls.default_retry
    if policy is None:
        return
    if not isinstance(policy, Retry):
        problems = [f"default_retry must be a Retry(...) or None, not {policy!r}"]
    else:
        problems = policy.problems()
    if problems:
        raise WorkflowDefinitionError(
            name, RULE_MALFORMED_RETRY, "malformed default_retry: " + "; ".join(problems)
        )


def _take_start_spec(cls: type[WorkflowDefinition]) -> None:
    """Record the start step the class body names, as ``start_step`` or (older) ``start``.

    A class naming neither inherits its base's start step.
    """
    body = cls.__dict__
    legacy = body.get("start")
    if legacy is not None and callable(getattr(legacy, "__func__", None)):
        legacy = None  # a classmethod called start: the runtime's Workflow.start()
    given = body.get("start_step")
    if legacy is not None and given is not None and _as_ref(legacy) != _as_ref(given):
        raise WorkflowDefinitionError(
            dotted_path(cls),
            "malformed-start",
            f"both start_step = {_spec_name(given)} and start = {_spec_name(legacy)} are set, "
            f"to different steps; set only start_step",
            steps=[ref.step.__qualname__ for ref in (_as_ref(given), _as_ref(legacy)) if ref],
        )
    if legacy is not None:
        delattr(cls, "start")
    if given is not None:
        cls._start_spec, cls._start_name = given, "start_step"
    elif legacy is not None:
        cls._start_spec, cls._start_name = legacy, "start"


def _as_ref(spec: object) -> StepRef | None:
    """``spec`` as a StepRef, so ``X`` and ``X.configure()`` compare equal; None if not a step."""
    if isinstance(spec, StepRef):
        return spec
    if isinstance(spec, type) and issubclass(spec, Step):
        return StepRef(spec)
    return None


def _spec_name(spec: object) -> str:
    ref = _as_ref(spec)
    return ref.step.__qualname__ if ref is not None else repr(spec)


def _check_limits(cls: type[WorkflowDefinition], name: str) -> None:
    """A workflow's ``concurrency`` bounds its running instances and its ``rate_limit`` its
    starts; both are taken by the first execution of its start step, which may therefore
    declare no limit of its own, and a workflow declares one of them, not both."""
    for attribute, malformed, conflicting in (
        ("concurrency", RULE_MALFORMED_CONCURRENCY, RULE_CONFLICTING_CONCURRENCY),
        ("rate_limit", RULE_MALFORMED_RATE_LIMIT, RULE_CONFLICTING_RATE_LIMIT),
    ):
        declared = cls.__dict__.get(attribute)
        if declared is None:
            continue
        problems = limit_problems(declared, attribute)
        start = cls.graph.start
        if not problems and (start.concurrency is not None or start.rate_limit is not None):
            problems = [
                f"its start step {start.__qualname__} declares a limit of its own, and the "
                f"first execution of the start step is what the workflow's {attribute} "
                f"bounds (begin with a step without a limit)"
            ]
        if not problems and cls.concurrency is not None and cls.rate_limit is not None:
            problems = ["a workflow declares a concurrency or a rate limit, not both"]
        if problems:
            raise WorkflowDefinitionError(
                name, malformed, f"malformed {attribute}: " + "; ".join(problems)
            )
        other = conflicting_declaration(cls, declared)
        if other is not None:
            raise WorkflowDefinitionError(
                name,
                conflicting,
                f"the limit {declared.name!r} ({attribute}) is declared by {other} with other "
                f"numbers; give both the same numbers, or the limits different names",
            )
        limit_starts(start)
