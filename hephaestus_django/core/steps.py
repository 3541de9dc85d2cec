"""Steps: the units of work a workflow is made of, and the built-in ones.

A step is a class. It declares the events it can emit and implements
``execute(instance, config, context)``; the workflow's transitions decide what
each event leads to. The class statement is checked at once, so a typo in
``events`` fails at import rather than in production.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from hephaestus_django.core.errors import StepDefinitionError
from hephaestus_django.core.flow import (
    RULE_CONFLICTING_CONCURRENCY,
    RULE_CONFLICTING_RATE_LIMIT,
    RULE_MALFORMED_CONCURRENCY,
    RULE_MALFORMED_RATE_LIMIT,
    Concurrency,
    RateLimit,
    conflicting_declaration,
    limit_problems,
)
from hephaestus_django.core.naming import dotted_path, snake_case
from hephaestus_django.core.outcomes import Async, StepResult
from hephaestus_django.core.policies import (
    RULE_MALFORMED_RETRY,
    RULE_MALFORMED_TIMEOUT,
    Retry,
    timeout_problems,
)
from hephaestus_django.core.registry import Registry

if TYPE_CHECKING:
    from hephaestus_django.core.instance import Context, Instance

RULE_NO_EXECUTE = "no-execute"
"""The rule id of a step class that neither defines nor inherits ``execute``."""

step_registry: Registry[type[Step]] = Registry("step")
"""Every step class, by dotted path."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Step:
    """Base class of every step.

    Subclasses set ``events`` (the events ``execute`` may emit) and may set
    ``step_key`` (where the step's result lives in ``context.steps``; default:
    the class name in snake_case). ``execute`` returns an event name, an
    :class:`~hephaestus_django.core.outcomes.Event` (with context updates
    and/or runtime-metadata updates), or
    :class:`~hephaestus_django.core.outcomes.Async` to wait; raising an
    exception fails the step.
    """

    events: ClassVar[tuple[str, ...]] = ()
    step_key: ClassVar[str] = "step"
    terminal: ClassVar[bool] = False
    """True for steps that end a path (``Done``); they emit no events."""
    expected_errors: ClassVar[tuple[type[Exception], ...]] = ()
    """Exceptions that are business outcomes (a declined card), not bugs.

    They fail the step like any exception, but are logged without a traceback, and are
    never retried.
    """
    retry: ClassVar[Retry | None] = None
    """How often the step is attempted when it raises (:class:`~hephaestus_django.Retry`);
    None: the workflow's ``default_retry``, and without one a single attempt."""
    timeout: ClassVar[timedelta | None] = None
    """How long one attempt of ``execute`` may run (a positive ``timedelta``); an attempt that
    runs longer fails with :class:`~hephaestus_django.StepTimeout`, retried under ``retry``,
    and its late result is discarded. None: the workflow's ``default_timeout``, and without
    one no bound. Not the ``timeout`` config of ``WaitForEvent``, which bounds a wait for an
    event, not a running call."""
    concurrency: ClassVar[Concurrency | None] = None
    """At most how many executions of the step run at once, across every process
    (:class:`~hephaestus_django.Concurrency`); None: no bound."""
    rate_limit: ClassVar[RateLimit | None] = None
    """At most how many executions of the step per window of time, across every process
    (:class:`~hephaestus_django.RateLimit`); None: no bound."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.events = _checked_events(cls)
        if "step_key" not in cls.__dict__:
            cls.step_key = snake_case(cls.__name__)
        elif not isinstance(cls.step_key, str) or not cls.step_key:
            raise StepDefinitionError(
                f"step {cls.__qualname__}: step_key must be a non-empty string, "
                f"not {cls.step_key!r}"
            )
        expected = cls.expected_errors
        if not isinstance(expected, tuple) or not all(
            isinstance(kind, type) and issubclass(kind, Exception) for kind in expected
        ):
            raise StepDefinitionError(
                f"step {cls.__qualname__}: expected_errors must be a tuple of exception "
                f"classes, not {expected!r}"
            )
        _check_retry(cls)
        _check_timeout(cls)
        _check_concurrency(cls)
        _check_rate_limit(cls)
        if cls.execute is Step.execute and not cls.__dict__.get("abstract", False):
            raise StepDefinitionError(
                f"step {cls.__qualname__} defines no execute(); give it "
                f"`def execute(self, instance, config, context)` returning one of its events "
                f"(or set abstract = True on a base class that is not a step by itself)",
                step=cls.__qualname__,
                rule=RULE_NO_EXECUTE,
            )
        if cls.terminal and cls.events:
            raise StepDefinitionError(
                f"terminal step {cls.__qualname__} declares events {cls.events}; "
                f"a terminal step ends its path and emits none"
            )
        step_registry.register(cls)

    def execute(
        self, instance: Instance, config: Mapping[str, Any], context: Context
    ) -> StepResult | Awaitable[StepResult]:
        """Do the step's work and say how it went.

        May be ``async def``: the runner runs the coroutine to its end in the thread that
        executes the step (which has no event loop of its own), so an async client library
        can be awaited in a step on either runner.
        """
        raise NotImplementedError(f"{type(self).__qualname__} must implement execute()")

    def compensate(
        self, instance: Instance, config: Mapping[str, Any], context: Context
    ) -> Awaitable[None] | None:
        """Undo what ``execute`` did (refund the charge, release the stock): override it to
        make the step compensable.

        Runs when the instance is cancelled with ``compensate=True``, or fails in a workflow
        with ``compensate_on_failure``, for every step that completed, the last completed
        first. It runs at least once (a worker may die after it and before it is recorded),
        under the step's retry policy and timeout, so make it idempotent. Its return value is
        ignored; raising fails the compensation like a step's attempt.
        """
        raise NotImplementedError(f"{type(self).__qualname__} does not define compensate()")

    @classmethod
    def compensable(cls) -> bool:
        """True when the step defines ``compensate``: only those are compensated."""
        return cls.compensate is not Step.compensate

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> None:
        """Check a config given to this step in a workflow definition.

        Raise ``ValueError`` with a message naming the bad key; the workflow
        reports it as a definition error. Runs when the workflow class is
        defined, so a bad config never reaches run time.
        """

    @classmethod
    def configure(cls, **config: Any) -> StepRef:
        """This step with a config, as a transition target or start step."""
        return StepRef(cls, config)

    @classmethod
    def path(cls) -> str:
        """The dotted path the step is stored under."""
        return dotted_path(cls)


@dataclass(frozen=True)
class StepRef:
    """A step together with the config it runs with."""

    step: type[Step]
    config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (isinstance(self.step, type) and issubclass(self.step, Step)):
            raise StepDefinitionError(f"{self.step!r} is not a Step subclass")
        if not isinstance(self.config, Mapping):
            raise StepDefinitionError(
                f"config of {self.step.__qualname__} must be a dict, not {self.config!r}"
            )
        object.__setattr__(self, "config", MappingProxyType(dict(self.config)))


def _check_retry(cls: type[Step]) -> None:
    policy = cls.__dict__.get("retry")
    if policy is None:
        return
    if not isinstance(policy, Retry):
        problems = [f"retry must be a Retry(...) or None, not {policy!r}"]
    else:
        problems = policy.problems()
    if problems:
        raise StepDefinitionError(
            f"step {cls.__qualname__}: malformed retry policy ({RULE_MALFORMED_RETRY}): "
            + "; ".join(problems),
            step=cls.__qualname__,
            rule=RULE_MALFORMED_RETRY,
        )


def _check_concurrency(cls: type[Step]) -> None:
    declared = cls.__dict__.get("concurrency")
    if declared is None:
        return
    problems = (
        declared.problems()
        if isinstance(declared, Concurrency)
        else [f"concurrency must be a Concurrency(...), not {declared!r}"]
    )
    if problems:
        raise StepDefinitionError(
            f"step {cls.__qualname__}: malformed concurrency ({RULE_MALFORMED_CONCURRENCY}): "
            + "; ".join(problems),
            step=cls.__qualname__,
            rule=RULE_MALFORMED_CONCURRENCY,
        )
    other = conflicting_declaration(cls, declared)
    if other is not None:
        raise StepDefinitionError(
            f"step {cls.__qualname__}: the concurrency limit {declared.name!r} is declared "
            f"by {other} with another number ({RULE_CONFLICTING_CONCURRENCY}); give both "
            f"steps the same number, or the limits different names",
            step=cls.__qualname__,
            rule=RULE_CONFLICTING_CONCURRENCY,
        )


def _check_rate_limit(cls: type[Step]) -> None:
    declared = cls.__dict__.get("rate_limit")
    if declared is None:
        return
    problems = limit_problems(declared, "rate_limit")
    if not problems and cls.concurrency is not None:
        problems = [
            "a step declares a concurrency or a rate limit, not both (put the rate limit on "
            "a step of its own before this one)"
        ]
    if problems:
        raise StepDefinitionError(
            f"step {cls.__qualname__}: malformed rate_limit ({RULE_MALFORMED_RATE_LIMIT}): "
            + "; ".join(problems),
            step=cls.__qualname__,
            rule=RULE_MALFORMED_RATE_LIMIT,
        )
    other = conflicting_declaration(cls, declared)
    if other is not None:
        raise StepDefinitionError(
            f"step {cls.__qualname__}: the rate limit {declared.name!r} is declared by {other} "
            f"with other numbers ({RULE_CONFLICTING_RATE_LIMIT}); give both the same limit "
            f"and window, or the limits different names",
            step=cls.__qualname__,
            rule=RULE_CONFLICTING_RATE_LIMIT,
        )


def _check_timeout(cls: type[Step]) -> None:
    problems = timeout_problems("timeout", cls.__dict__.get("timeout"))
    if problems:
        raise StepDefinitionError(
            f"step {cls.__qualname__}: malformed timeout ({RULE_MALFORMED_TIMEOUT}): "
            + "; ".join(problems),
            step=cls.__qualname__,
            rule=RULE_MALFORMED_TIMEOUT,
        )


def _checked_events(cls: type[Step]) -> tuple[str, ...]:
    events = cls.events
    if isinstance(events, str) or not isinstance(events, (tuple, list, frozenset, set)):
        raise StepDefinitionError(
            f"step {cls.__qualname__}: events must be a tuple of strings, not {events!r}"
        )
    listed = tuple(sorted(events)) if isinstance(events, (set, frozenset)) else tuple(events)
    for event in listed:
        if not isinstance(event, str) or not event:
            raise StepDefinitionError(
                f"step {cls.__qualname__}: event names must be non-empty strings, not {event!r}"
            )
    if len(set(listed)) != len(listed):
        raise StepDefinitionError(f"step {cls.__qualname__}: events {listed} repeat a name")
    return listed


# --- built-in steps -------------------------------------------------------------------------

TIME_UNITS: Mapping[str, timedelta] = MappingProxyType(
    {
        "second": timedelta(seconds=1),
        "minute": timedelta(minutes=1),
        "hour": timedelta(hours=1),
        "day": timedelta(days=1),
        "week": timedelta(weeks=1),
    }
)


def duration_from_config(config: Mapping[str, Any], owner: str) -> timedelta:
    """``{"duration": 5, "unit": "minutes"}`` -> ``timedelta(minutes=5)``.

    Units are second/minute/hour/day/week, singular or plural.
    """
    duration, unit = config.get("duration"), config.get("unit", "seconds")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0:
        raise ValueError(f"{owner} needs a non-negative number 'duration', not {duration!r}")
    key = unit[:-1] if isinstance(unit, str) and unit.endswith("s") else unit
    if key not in TIME_UNITS:
        units = ", ".join(f"{name}s" for name in TIME_UNITS)
        raise ValueError(f"{owner} has unknown 'unit' {unit!r}; use one of {units}")
    return duration * TIME_UNITS[key]


class Done(Step):
    """The end of a path. Subclass it for several distinct endings."""

    terminal = True

    def execute(
        self, instance: Instance, config: Mapping[str, Any], context: Context
    ) -> StepResult:
        return None


class Wait(Step):
    """Wait for a duration, then emit ``timeout``.

    Config: ``Wait.configure(duration=10, unit="minutes")``. The due time is
    stored with the instance, so the timer survives process restarts.
    """

    events = ("timeout",)

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> None:
        duration_from_config(config, f"{cls.__qualname__} config")
        unknown = set(config) - {"duration", "unit"}
        if unknown:
            raise ValueError(f"{cls.__qualname__} config has unknown keys {sorted(unknown)}")

    def execute(
        self, instance: Instance, config: Mapping[str, Any], context: Context
    ) -> StepResult:
        return Async(after=duration_from_config(config, "Wait"), timer_event="timeout")


class WaitForEvent(Step):
    """Wait until ``resume()`` delivers one of the declared events.

    Subclass it to name your events (``events = ("shipped", "cancelled")``);
    the payload given to ``resume`` becomes the step's result. With
    ``configure(timeout={"duration": 3, "unit": "days"})`` the step emits
    ``timeout`` (which it must then declare) if nothing arrives in time.
    """

    events = ("received",)

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> None:
        unknown = set(config) - {"timeout"}
        if unknown:
            raise ValueError(f"{cls.__qualname__} config has unknown keys {sorted(unknown)}")
        timeout = config.get("timeout")
        if timeout is None:
            return
        if not isinstance(timeout, Mapping):
            raise ValueError(f"{cls.__qualname__} 'timeout' must be a dict with duration and unit")
        duration_from_config(timeout, f"{cls.__qualname__} 'timeout'")
        if "timeout" not in cls.events:
            raise ValueError(
                f"{cls.__qualname__} has a timeout, so it must declare the event 'timeout'"
            )

    def execute(
        self, instance: Instance, config: Mapping[str, Any], context: Context
    ) -> StepResult:
        timeout = config.get("timeout")
        if timeout is None:
            return Async()
        return Async(after=duration_from_config(timeout, "timeout"), timer_event="timeout")


class Debug(Step):
    """Log the context and history, then emit ``continue``."""

    events = ("continue",)
    logger = logging.getLogger("hephaestus_django.debug")

    def execute(
        self, instance: Instance, config: Mapping[str, Any], context: Context
    ) -> StepResult:
        self.logger.info(
            "instance %s of %s: context=%r history=%r",
            instance.id,
            instance.workflow.__qualname__,
            context,
            [(entry.step.__qualname__, entry.event) for entry in instance.execution_history],
        )
        return "continue"
