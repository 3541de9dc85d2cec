"""The forms of the admin's confirmation pages, and what those pages state before confirming.

Every form carries the revision its page was rendered with, so an operation is refused when the
instance changed since. A resume payload is checked here to be JSON the storage can keep, within
the bounds of :mod:`hephaestus_django.admin.limits`, so a bad one is a form error, never a
failed write or a server error.
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
    check_length,
    check_nesting,
)
from hephaestus_django.core.errors import HephaestusError, InvalidQueryError
from hephaestus_django.core.instance import Instance
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.runtime import codec


class RevisionForm(forms.Form):
    """A confirmation: the revision the page showed, sent back to refuse acting on a stale page."""

    revision = forms.IntegerField(widget=forms.HiddenInput)


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
    return [
        ("workflow", f"{row.workflow}, version {row.workflow_version}"),
        ("status", row.status),
        ("started", _when(row.inserted_at)),
        ("updated", _when(row.updated_at)),
    ]


def _when(moment: Any) -> str:
    return times.as_text(moment) if moment else "—"
