"""Workflows shared by the tests.

Steps here are *scripted*: what a step does comes from
``context.initial["script"][step_key]`` — an event name, ``"wait"``, or
``"fail"`` — so one workflow covers many engine cases, each a row in a table.
Steps also record every execution in ``EXECUTIONS`` so tests can check that
nothing ran twice.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from hephaestus_django import (
    Async,
    Done,
    Event,
    Retry,
    Route,
    Step,
    StepTimeout,
    Wait,
    WaitForEvent,
    Workflow,
)
from hephaestus_django.core import engine
from hephaestus_django.core.instance import Context, Instance
from hephaestus_django.runtime.execution import execute_step

EXECUTIONS: Counter[str] = Counter()
_lock = threading.Lock()


class StepFailed(RuntimeError):
    """Raised by a scripted step told to fail."""


class Scripted(Step):
    """Emits its first event unless the script says otherwise."""

    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        with _lock:
            EXECUTIONS[f"{instance.id}:{self.step_key}"] += 1
        action = context.initial.get("script", {}).get(self.step_key, self.events[0])
        if action == "fail":
            raise StepFailed(f"{self.step_key} was told to fail")
        if action == "wait":
            return Async()
        return Event(action, updates={"ran": self.step_key})


def executions(instance_id: object) -> dict[str, int]:
    """How often each step of one instance executed."""
    prefix = f"{instance_id}:"
    return {key[len(prefix) :]: n for key, n in EXECUTIONS.items() if key.startswith(prefix)}


class Check(Scripted):
    events = ("valid", "invalid")


class Approve(Scripted):
    pass


class Reject(Scripted):
    pass


class Merge(Scripted):
    pass


class Split(Scripted):
    pass


class Pack(Scripted):
    pass


class Charge(Scripted):
    pass


class Notify(Scripted):
    pass


class Join(Scripted):
    pass


class IfElse(Workflow):
    """Exclusive branches that merge: the merge must run exactly once."""

    start = Check
    transitions = {
        Check: {"valid": Approve, "invalid": Reject},
        Approve: {"ok": Merge},
        Reject: {"ok": Merge},
        Merge: {"ok": Done},
    }


class FanOut(Workflow):
    """A three-way fan-out and its join."""

    start = Split
    transitions = {
        Split: {"ok": [Pack, Charge, Notify]},
        Pack: {"ok": Join},
        Charge: {"ok": Join},
        Notify: {"ok": Join},
        Join: {"ok": Done},
    }


class Signature(WaitForEvent):
    events = ("signed", "declined")


class Payment(WaitForEvent):
    events = ("paid",)


class Finish(Scripted):
    pass


class Declined(Done):
    pass


class TwoWaits(Workflow):
    """Two branches waiting at once, resumed one by one."""

    start = Split
    transitions = {
        Split: {"ok": [Signature, Payment]},
        Signature: {"signed": Join, "declined": Join},
        Payment: {"paid": Join},
        Join: {"ok": Finish},
        Finish: {"ok": Done},
    }


class Timed(Workflow):
    """A timer, then the end."""

    start = Approve
    transitions = {
        Approve: {"ok": Wait.configure(duration=5, unit="minutes")},
        Wait: {"timeout": Done},
    }


def choose_lane(context: Context) -> type[Step]:
    return Pack if context.initial.get("lane") == "pack" else Notify


class Routed(Workflow):
    """A dynamic route choosing one of two declared targets from the context."""

    start = Check
    transitions = {
        Check: {"valid": Route(choose_lane, [Pack, Notify]), "invalid": Declined},
        Pack: {"ok": Merge},
        Notify: {"ok": Merge},
        Merge: {"ok": Done},
    }


class Weigh(Scripted):
    pass


class Label(Scripted):
    pass


class Uneven(Workflow):
    """A fan-out whose branches differ in length: the join waits for the long one."""

    start = Split
    transitions = {
        Split: {"ok": [Pack, Charge]},
        Pack: {"ok": Weigh},
        Weigh: {"ok": Label},
        Label: {"ok": Join},
        Charge: {"ok": Join},
        Join: {"ok": Done},
    }


# --- retries -------------------------------------------------------------------------------

ATTEMPTS: Counter[str] = Counter()
"""How often each ``Flaky`` step of each instance ran, in this process."""


class Transient(ConnectionError):
    """What a flaky service raises: worth another attempt."""


class CardDeclined(Exception):
    """A business outcome: never retried, even when the policy names it."""


class Unrelated(ValueError):
    """An error the policy does not name."""


RETRY_ERRORS: dict[str, type[Exception]] = {
    "transient": Transient,
    "declined": CardDeclined,
    "unrelated": Unrelated,
}


class Flaky(Step):
    """Fails its first ``context.initial["fails"]`` runs (``"<step_key>_fails"`` for a
    subclass; counted per instance, in this process) with ``context.initial["error"]``
    (default ``"transient"``), then emits ``ok``."""

    events = ("ok",)
    expected_errors = (CardDeclined,)
    retry = Retry(
        max_attempts=3,
        backoff=timedelta(seconds=10),
        factor=2,
        max_backoff=timedelta(seconds=15),
        jitter=False,
        on=(Transient, CardDeclined),
    )

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        key = f"{instance.id}:{self.step_key}"
        with _lock:
            ATTEMPTS[key] += 1
            attempt = ATTEMPTS[key]
        fails = context.initial.get(f"{self.step_key}_fails", context.initial.get("fails", 0))
        if attempt <= fails:
            kind = RETRY_ERRORS[context.initial.get("error", "transient")]
            raise kind(f"run {attempt} failed")
        return Event("ok", updates={"runs": attempt})


class Retried(Workflow):
    """``Flaky``, then ``Done``."""

    start_step = Flaky
    transitions = {Flaky: {"ok": Done}}


class PlainFlaky(Flaky):
    """``Flaky`` without a policy of its own: the workflow's ``default_retry`` applies."""

    retry = None


class OnceOnly(Flaky):
    """``Flaky`` that opts out of its workflow's default: one attempt."""

    retry = Retry(max_attempts=1)


class RetriedByDefault(Workflow):
    """Two steps under the workflow's default policy, one of which opts out of it."""

    default_retry = Retry(max_attempts=2, backoff=timedelta(seconds=5), jitter=False)
    start_step = PlainFlaky
    transitions = {PlainFlaky: {"ok": OnceOnly}, OnceOnly: {"ok": Done}}


class Unguarded(Workflow):
    """``PlainFlaky`` under no policy of its own or its workflow's: the project's applies."""

    start_step = PlainFlaky
    transitions = {PlainFlaky: {"ok": Done}}


def runs(instance_id: object, step: type[Step] = Flaky) -> int:
    """How often a ``Flaky`` step of one instance ran in this process."""
    return ATTEMPTS[f"{instance_id}:{step.step_key}"]


# --- timeouts ------------------------------------------------------------------------------

TIMEOUT = timedelta(milliseconds=250)
"""``Stalling``'s timeout: short, as every hung attempt costs it; the attempts that do not hang
return at once, far inside it."""

_GATES: dict[str, threading.Event] = {}
_HUNG: dict[str, list[threading.Thread]] = {}


def gate(instance_id: object) -> threading.Event:
    """What the hanging attempts of one instance's ``Stalling`` steps wait for."""
    with _lock:
        return _GATES.setdefault(str(instance_id), threading.Event())


def release(instance_id: object) -> None:
    """Let the instance's hung attempts return (late), and wait until their threads ended.

    A thread's end includes discarding its late result, so whatever the runtime does with it
    has happened when this returns.
    """
    gate(instance_id).set()
    with _lock:
        hung = list(_HUNG.get(str(instance_id), []))
    for thread in hung:
        thread.join(timeout=30)
        assert not thread.is_alive(), f"{thread.name} did not end after its release"


class Stalling(Step):
    """Hangs in its first ``context.initial["hangs"]`` attempts (counted per instance and step,
    in this process) until the test calls ``release``, then returns
    ``Event("ok", updates={"attempt": n, "late": True})``; later attempts return
    ``Event("ok", updates={"attempt": n})`` at once."""

    events = ("ok",)
    timeout = TIMEOUT

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        key = f"{instance.id}:{self.step_key}"
        with _lock:
            ATTEMPTS[key] += 1
            attempt = ATTEMPTS[key]
        if attempt <= context.initial.get("hangs", 0):
            with _lock:
                _HUNG.setdefault(str(instance.id), []).append(threading.current_thread())
            gate(instance.id).wait(timeout=60)  # 60 s: a failed test never leaves it for good
            return Event("ok", updates={"attempt": attempt, "late": True})
        return Event("ok", updates={"attempt": attempt})


class Stalls(Workflow):
    """``Stalling`` without a retry policy: a timeout fails the instance."""

    start_step = Stalling
    transitions = {Stalling: {"ok": Done}}


class RetriedStalling(Stalling):
    """``Stalling`` under a policy that retries timeouts only, after no wait."""

    retry = Retry(max_attempts=3, backoff=timedelta(0), jitter=False, on=(StepTimeout,))


class StallsThenRecovers(Workflow):
    """``RetriedStalling``, then ``Done``."""

    start_step = RetriedStalling
    transitions = {RetriedStalling: {"ok": Done}}


# --- sagas: steps that can be undone ----------------------------------------------------------

UNDONE: list[str] = []
"""``"<instance id>:<step key>"`` for every compensation that ran, in order."""
BROKEN_UNDO: set[str] = set()
"""Step keys whose compensation raises until a test removes them."""


class Compensable(Scripted):
    """A scripted step that can be undone: its compensation is recorded in ``UNDONE``."""

    def compensate(self, instance: Instance, config: Mapping[str, Any], context: Context) -> None:
        if self.step_key in BROKEN_UNDO:
            raise StepFailed(f"{self.step_key} could not be undone")
        with _lock:
            UNDONE.append(f"{instance.id}:{self.step_key}")


class Hold(Compensable):
    """Reserves stock; undone by releasing it."""


class Mail(Scripted):
    """Sends an e-mail: nothing to undo, no compensation."""


class Bill(Compensable):
    """Charges the card; undone by a refund."""


class Shipment(WaitForEvent):
    events = ("shipped",)


class Saga(Workflow):
    """Two compensable steps around one that is not, then a wait: cancelled while it waits."""

    start_step = Hold
    transitions = {
        Hold: {"ok": Mail},
        Mail: {"ok": Bill},
        Bill: {"ok": Shipment},
        Shipment: {"shipped": Done},
    }


class FailingSaga(Workflow):
    """The same steps, compensated when one fails (``script={"bill": "fail"}``)."""

    compensate_on_failure = True
    start_step = Hold
    transitions = {Hold: {"ok": Mail}, Mail: {"ok": Bill}, Bill: {"ok": Done}}


def undone(instance_id: object) -> list[str]:
    """The step keys of one instance whose compensation ran, in the order they ran."""
    prefix = f"{instance_id}:"
    return [key[len(prefix) :] for key in UNDONE if key.startswith(prefix)]


def run_to_rest(instance: Instance) -> Instance:
    """Run what is runnable until nothing is, compensations included: what a runner does,
    minus threads and storage."""
    while activations := engine.runnable(instance):
        results = [execute_step(instance, activation) for activation in activations]
        instance = engine.apply(instance, results, now=datetime.now(UTC))
    return instance
