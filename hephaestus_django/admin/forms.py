"""The forms of the admin's confirmation pages, and what those pages state before confirming.

Every form carries the revision its page was rendered with, so an operation is refused when the
instance changed since. A resume payload and a cancellation's reason are checked here to be
values the storage can keep, within the bounds of :mod:`hephaestus_django.admin.limits`, so a bad
one is a form error, never a failed write or a server error.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from hephaestus_django.admin import times
from hephaestus_django.admin.limits import (
    PAYLOAD_MAX_CHARS,
    PAYLOAD_MAX_DEPTH,
    REASON_MAX_CHARS,
    check_characters,
    check_length,
    check_nesting,
)
from hephaestus_django.core.engine import compensations
from hephaestus_django.core.errors import HephaestusError, InvalidQueryError, RewindError
from hephaestus_django.core.graph import StepClass
from hephaestus_django.core.instance import Instance
from hephaestus_django.core.rewind import RewindPlan
from hephaestus_django.core.rewind import plan as rewind_plan
from hephaestus_django.core.upgrades import mapped_steps, upgrade_target
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.runtime import codec


class RevisionForm(forms.Form):
    """A confirmation: the revision the page showed, sent back to refuse acting on a stale page."""

    revision = forms.IntegerField(widget=forms.HiddenInput)


class PauseForm(RevisionForm):
    """An optional reason, kept with the paused instance."""

    reason = forms.CharField(
        label="Reason",
        required=False,
        strip=True,
        max_length=REASON_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text='Optional. Kept with the instance (runtime_metadata["hephaestus.paused"]), '
        "e.g. “deploying the pricing fix”.",
    )


class ResumeForm(RevisionForm):
    """Which waiting step gets which of its declared events, and an optional JSON payload."""

    event = forms.ChoiceField(label="Step and event")
    payload = forms.CharField(
        label="Payload (JSON)",
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60, "spellcheck": "false"}),
        help_text="Optional. Stored as the step's result, e.g. "
        '{"tracking": "TRK-1"}. Leave empty to resume without data.',
    )

    def __init__(self, instance: Instance, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        graph = instance.workflow.graph
        self.fields["event"].choices = [
            (
                f"{step.__name__} (waiting)",
                [
                    (json.dumps([step.path(), event]), f"{step.__name__}: {event}")
                    for event in step.events
                ],
            )
            for step in graph.sorted(
                step for step, waiting in instance.waiting_steps.items() if waiting.attempt is None
            )
        ]

    def clean_event(self) -> tuple[str, str]:
        step, event = json.loads(self.cleaned_data["event"])  # one of our own choices
        return str(step), str(event)

    def clean_payload(self) -> Any:
        text = self.cleaned_data["payload"]
        if not text:
            return None
        try:
            # Before parsing: json recurses once per level, and a long text costs time.
            check_length(text, "This payload", PAYLOAD_MAX_CHARS)
            check_nesting(text, "This payload", PAYLOAD_MAX_DEPTH)
        except InvalidQueryError as error:
            raise ValidationError(f"{error}.") from error
        try:
            value = json.loads(text, parse_constant=_no_constant)
        except ValueError as error:
            raise ValidationError(
                f"This is not valid JSON: {error}. Leave the field empty to resume without data."
            ) from error
        try:
            codec.encode(value, path="payload")
        except HephaestusError as error:
            raise ValidationError(str(error)) from error
        return value


class CancelForm(RevisionForm):
    """An optional reason, kept with the instance, and whether to compensate its completed steps.

    The checkbox is there only when a completed step defines ``compensate``: without one there
    is nothing to undo, and offering it would suggest otherwise.
    """

    reason = forms.CharField(
        label="Reason",
        required=False,
        strip=True,
        max_length=REASON_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Optional. Kept with the instance (instance.cancellation.reason), e.g. "
        "“customer called to cancel”.",
    )

    def __init__(self, instance: Instance, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.compensations = compensations(instance)
        if self.compensations:
            self.fields["compensate"] = forms.BooleanField(
                label="Compensate completed steps",
                label_suffix="",  # a checkbox's label follows it, as in Django's admin
                required=False,
                help_text=f"Runs the compensate() of {in_order(self.compensations)}, in this "
                "order, before the instance ends cancelled. Completed steps without a "
                "compensate() are left as they are.",
            )

    def clean_reason(self) -> str | None:
        # Django's CharField already refuses NUL; this also names lone surrogates, which
        # PostgreSQL cannot store either.
        text: str = self.cleaned_data["reason"]
        try:
            check_characters(text, "This reason")
        except InvalidQueryError as error:
            raise ValidationError(f"{error}.") from error
        return text or None

    def clean_compensate(self) -> bool:
        return bool(self.cleaned_data.get("compensate"))


class UpgradeForm(RevisionForm):
    """A confirmation of an upgrade, carrying the version the page proposed."""

    to_version = forms.IntegerField(widget=forms.HiddenInput)


class StepChoiceForm(RevisionForm):
    """Which step to rewind (or fork) to: the steps the instance reached that it can go back
    to, each with what that would forget (:func:`~hephaestus_django.core.rewind.plan`).

    ``plans`` are those answers, in the graph's order, for the page to state before the
    operator confirms; a step refused (never reached, ...) is not offered.
    """

    step = forms.ChoiceField(label="Step")

    def __init__(self, instance: Instance, verb: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plans: list[RewindPlan] = []
        for step in instance.workflow.graph.order:
            try:
                self.plans.append(rewind_plan(instance, step, verb=verb))
            except RewindError:
                continue
        self.fields["step"].choices = [(found.to.path(), found.to.__name__) for found in self.plans]
        self.offers_compensation = verb == "rewound" and any(
            found.compensations for found in self.plans
        )
        if self.offers_compensation:
            self.fields["compensate"] = forms.BooleanField(
                label="Compensate the forgotten steps first",
                label_suffix="",
                required=False,
                help_text="Runs the compensate() of the forgotten completed steps that define "
                "one, the last completed first, before the instance runs on from the step.",
            )

    def chosen(self) -> RewindPlan:
        """The plan of the step chosen (valid: one of the choices)."""
        path = self.cleaned_data["step"]
        return next(found for found in self.plans if found.to.path() == path)

    def clean_compensate(self) -> bool:
        return bool(self.cleaned_data.get("compensate"))


def plan_facts(plans: list[RewindPlan]) -> list[tuple[str, Any]]:
    """What choosing each step would do: the steps forgotten, those active after, and the
    compensations that can run first."""
    found: list[tuple[str, Any]] = []
    for plan in plans:
        text = f"forgets {_names(list(plan.forgotten))}; then {_names(list(plan.active))} run"
        if plan.compensations:
            text += f"; compensations if ticked: {in_order(plan.compensations)}"
        found.append((f"to {plan.to.__name__}", text))
    return found


def in_order(steps: tuple[StepClass, ...]) -> str:
    """``"Charge, then Reserve"``: steps in the order their compensations run."""
    return ", then ".join(step.__name__ for step in steps)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value that can be stored")


def facts(
    operation: str, row: WorkflowInstance, instance: Instance | None
) -> list[tuple[str, Any]]:
    """What the confirmation page states about the instance before the operator confirms."""
    if operation == "resume" and instance is not None:
        return [
            (
                f"{step.__name__} waits to retry",
                f"attempt {waiting.attempt} at {_when(waiting.resume_at)}; it cannot be resumed",
            )
            if waiting.attempt is not None
            else (
                f"{step.__name__} is waiting",
                f"since {_when(waiting.since)}; accepts {', '.join(step.events)}"
                + (
                    f"; its timer fires “{waiting.timer_event}” at {_when(waiting.resume_at)}"
                    if waiting.resume_at
                    else ""
                ),
            )
            for step, waiting in instance.waiting_steps.items()
        ]
    if operation == "retry" and instance is not None and instance.error is not None:
        error = instance.error
        return [
            ("failed step", f"{error.step.__name__} ({error.step.path()})"),
            ("error", f"{error.error_type}: {error.message}"),
            ("failed at", _when(error.at)),
        ]
    if operation == "cancel" and instance is not None:
        return _cancel_facts(instance)
    if operation == "upgrade" and instance is not None:
        return _upgrade_facts(instance)
    return [
        ("workflow", f"{row.workflow}, version {row.workflow_version}"),
        ("status", row.status),
        ("started", _when(row.inserted_at)),
        ("updated", _when(row.updated_at)),
    ]


def _cancel_facts(instance: Instance) -> list[tuple[str, Any]]:
    """Where the instance stands, which of its steps stop, and what compensating would undo."""
    graph = instance.workflow.graph
    waiting = graph.sorted(instance.waiting_steps)
    running = graph.sorted(instance.active_steps - instance.waiting_steps.keys())
    undone = compensations(instance)
    kept = [step for step in graph.sorted(instance.completed_steps) if step not in undone]
    found: list[tuple[str, Any]] = [("status", str(instance.status))]
    if waiting:
        found.append(("waiting", f"{_names(waiting)}: stops waiting; its timers are dropped"))
    if running:
        found.append(
            (
                "running or queued",
                f"{_names(running)}: a result that comes back later is discarded, and the "
                "step is not compensated",
            )
        )
    found.append(("completed", _names(graph.sorted(instance.completed_steps)) or "none"))
    if undone:
        found.append(("compensated if you tick the box, in order", in_order(undone)))
    if kept:
        found.append(("completed without compensate() (never undone)", _names(kept)))
    return found


def _upgrade_facts(instance: Instance) -> list[tuple[str, Any]]:
    """The versions, and what becomes of each step the instance holds."""
    target = upgrade_target(instance)
    if target is None:  # pragma: no cover - the view refuses it first
        return [("status", str(instance.status))]
    found: list[tuple[str, Any]] = [
        ("status", str(instance.status)),
        ("from", f"version {instance.workflow_version} ({instance.workflow.__qualname__})"),
        ("to", f"version {target.version} ({target.__qualname__})"),
    ]
    held = instance.active_steps | instance.waiting_steps.keys()
    for step, new in mapped_steps(instance, target):
        where = "waiting" if step in instance.waiting_steps else "active" if step in held else ""
        label = f"{step.__name__}" + (f" ({where})" if where else " (completed)")
        if new is None:
            found.append((label, "dropped: its history entries and result are removed"))
        elif new is step:
            found.append((label, "kept"))
        else:
            found.append((label, f"becomes {new.__name__}"))
    return found


def _names(steps: list[StepClass]) -> str:
    return ", ".join(step.__name__ for step in steps)


def _when(moment: Any) -> str:
    return times.as_text(moment) if moment else "—"
