"""Step policies: how often a failing step is attempted, and how long to wait in between.

::

    class ChargeCard(Step):
        events = ("charged",)
        retry = Retry(max_attempts=5, backoff=timedelta(seconds=2), on=(PaymentGatewayDown,))

    class Fulfilment(Workflow):
        default_retry = Retry(max_attempts=3)   # for the steps that declare none

A :class:`Retry` is a plain frozen value: building one never raises, and
:meth:`Retry.problems` says what is wrong with it. Step and workflow classes
call it when they are defined, so a malformed policy fails at import
(rule ``malformed-retry``), never at run time.

A step's ``timeout`` (or a workflow's ``default_timeout``) bounds how long one attempt may
run; :func:`timeout_problems` checks it when the class is defined (rule
``malformed-timeout``). The runtime enforces it (:mod:`hephaestus_django.runtime.execution`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from hephaestus_django.core.durations import duration_problems

RULE_MALFORMED_RETRY = "malformed-retry"
"""The rule id of a step or workflow whose retry policy is malformed."""

RULE_MALFORMED_TIMEOUT = "malformed-timeout"
"""The rule id of a step whose ``timeout`` (or a workflow whose ``default_timeout``) is not a
positive ``timedelta`` or None."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Attempt a failing step up to ``max_attempts`` times in all, waiting in between.

    After the n-th failed attempt the step waits ``backoff * factor ** (n - 1)``, at most
    ``max_backoff``; with ``jitter`` the wait is scaled by a random factor between 0.5 and 1,
    so that instances failing together do not all come back at once. Only errors that are
    instances of a class in ``on`` are retried, and never the step's ``expected_errors``
    (those are business outcomes). ``max_attempts=1`` means no retry: a step can opt out of
    its workflow's ``default_retry`` with it.

    The defaults are the original Hephaestus runner's: 5 attempts, 1 s doubling up to 60 s.
    """

    max_attempts: int = 5
    backoff: timedelta = timedelta(seconds=1)
    factor: float = 2.0
    max_backoff: timedelta = timedelta(minutes=1)
    jitter: bool = True
    on: tuple[type[Exception], ...] = (Exception,)

    def problems(self) -> list[str]:
        """What is malformed in this policy, one sentence each; empty when it is sound."""
        found = []
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            found.append(f"max_attempts must be an int of at least 1, not {attempts!r}")
        for name in ("backoff", "max_backoff"):
            found.extend(
                duration_problems(name, getattr(self, name), seconds=False, positive=False)
            )
        factor = self.factor
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not factor >= 1:
            found.append(f"factor must be a number of at least 1, not {factor!r}")
        elif factor == float("inf"):
            found.append("factor must be finite")
        if not isinstance(self.jitter, bool):
            found.append(f"jitter must be True or False, not {self.jitter!r}")
        on = self.on
        if not isinstance(on, tuple) or not on:
            found.append(f"on must be a non-empty tuple of exception classes, not {on!r}")
        else:
            wrong = [kind for kind in on if not _is_exception_class(kind)]
            if wrong:
                names = ", ".join(map(repr, wrong))
                found.append(f"on must hold subclasses of Exception only, not {names}")
        return found

    def allows(self, failed_attempts: int, error: BaseException) -> bool:
        """True when a step that has failed ``failed_attempts`` times (counting the attempt
        that just raised ``error``) may be attempted again."""
        return failed_attempts < self.max_attempts and isinstance(error, self.on)

    def delay(self, attempt: int, random_value: float = 1.0) -> timedelta:
        """The wait after the ``attempt``-th failed attempt (1 for the first).

        ``random_value`` is a float in [0, 1) the caller draws (``random.random()``), so
        the policy itself stays deterministic; it only matters with ``jitter``, where the
        wait is scaled by ``0.5 + random_value / 2``.
        """
        base = self.backoff.total_seconds()
        cap = self.max_backoff.total_seconds()
        try:
            seconds = min(base * self.factor ** max(attempt - 1, 0), cap)
        except OverflowError:
            seconds = cap
        if self.jitter:
            seconds *= 0.5 + min(max(random_value, 0.0), 1.0) / 2
        return timedelta(seconds=seconds)


def _is_exception_class(kind: object) -> bool:
    return isinstance(kind, type) and issubclass(kind, Exception)


def timeout_problems(name: str, value: object) -> list[str]:
    """What is wrong with ``value`` as a step's time bound ``name``; empty when it is sound.

    A bound is a positive ``timedelta``, or None for none. A number is refused rather than
    read as seconds, as ``Retry`` refuses one for its backoff: ``timeout = 5`` could as well
    mean minutes.
    """
    return duration_problems(name, value, seconds=False, optional=True)


class _ProjectDefaults:
    """Process-wide policies for the steps and workflows that declare none of their own.

    Inside Django, ``HEPHAESTUS["DEFAULT_RETRY"]`` sets :attr:`retry` when the app starts
    (and again when the setting changes); outside it, :func:`set_project_retry`. A step's own
    ``retry`` wins, then its workflow's ``default_retry``, then this.
    """

    retry: Retry | None = None


project_defaults = _ProjectDefaults()


def set_project_retry(policy: Retry | None) -> None:
    """Set the project-wide default retry policy (None: a single attempt, the default);
    a malformed policy is refused with ``ValueError`` saying what is wrong."""
    if policy is not None:
        if not isinstance(policy, Retry):
            raise ValueError(
                f"the default retry policy must be a Retry(...) or None, not {policy!r}"
            )
        problems = policy.problems()
        if problems:
            raise ValueError("malformed default retry policy: " + "; ".join(problems))
    project_defaults.retry = policy
