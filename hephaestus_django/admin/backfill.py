"""A schedule's backfill from the admin: a range, a preview of what it starts, a confirmation.

The page asks for a range in the schedule's own time zone, shows how many ticks fall in it and
how many of them have their instance already, and starts the rest only once that preview is
confirmed. The start goes through :meth:`~hephaestus_django.runtime.schedules.Scheduler.backfill`,
the command's way: each tick's instance has an id made from the schedule and the tick, so a
tick started already (by a worker, an earlier backfill, or a second click) is not started
again. A range of more than :data:`~hephaestus_django.runtime.schedules.MAX_BACKFILL` ticks is
refused with the preview's error, as is a confirmation whose range or schedule changed since
its preview (the form carries a fingerprint of both): bad input is a form error, never a 500.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django import forms

from hephaestus_django.core.errors import HephaestusError
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.runtime.contract import Storage
from hephaestus_django.runtime.schedules import MAX_BACKFILL, Schedule, Scheduler

INPUT_MAX_CHARS = 64
"""A bound on each typed time: an ISO 8601 time is far shorter."""


@dataclass(frozen=True)
class Preview:
    """What a backfill of the range would do: its ticks, and how many are started already."""

    ticks: list[tuple[datetime, uuid.UUID]]
    started: int | None
    """Ticks whose instance exists; None where the storage cannot say cheaply."""
    fingerprint: str

    @property
    def to_start(self) -> int | None:
        return None if self.started is None else len(self.ticks) - self.started


def fingerprint(schedule: Schedule, start: datetime, end: datetime) -> str:
    """Names the schedule's ticks in the range: a confirmation whose fingerprint differs from
    the one its preview showed is stale (the range was edited, or the schedule changed)."""
    parts = (schedule.name, schedule.workflow, schedule.cron, schedule.timezone)
    text = "|".join([*parts, start.isoformat(), end.isoformat()])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def preview(
    scheduler: Scheduler, schedule: Schedule, storage: Storage, start: datetime, end: datetime
) -> Preview:
    """The ticks a backfill of ``start``..``end`` starts; ``ScheduleError`` as the backfill
    raises it (bounds, a range not in the past, more than ``MAX_BACKFILL`` ticks)."""
    ticks = scheduler.backfill_ticks(schedule.name, storage, start, end)
    using = getattr(storage, "using", None)
    started = None
    if isinstance(using, str):
        ids = [instance_id for _tick, instance_id in ticks]
        started = WorkflowInstance.objects.using(using).filter(pk__in=ids).count() if ids else 0
    return Preview(ticks, started, fingerprint(schedule, start, end))


class BackfillForm(forms.Form):
    """From and to, read in the schedule's time zone unless they carry an offset; the hidden
    fingerprint is set by a preview, and makes the next post a confirmation."""

    start = forms.CharField(
        label="From",
        max_length=INPUT_MAX_CHARS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}),
    )
    end = forms.CharField(
        label="To",
        max_length=INPUT_MAX_CHARS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}),
    )
    fingerprint = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, schedule: Schedule, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.schedule = schedule
        for name in ("start", "end"):
            self.fields[name].help_text = (
                f"In {schedule.timezone} (e.g. 2025-01-31T02:00), or with an offset "
                "(2025-01-31T02:00+01:00). Both ends are included."
            )

    def _when(self, name: str) -> datetime:
        text = self.cleaned_data[name].strip()
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise forms.ValidationError(
                "Not a time: give it as 2025-01-31T02:00 (or with an offset, +01:00)."
            ) from None
        return value if value.tzinfo is not None else value.replace(tzinfo=self.schedule.zone)

    def clean_start(self) -> datetime:
        return self._when("start")

    def clean_end(self) -> datetime:
        return self._when("end")

    def check(self, scheduler: Scheduler, storage: Storage) -> Preview | None:
        """The preview of a valid form, or None with the reason added as a form error."""
        if not self.is_valid():
            return None
        start, end = self.cleaned_data["start"], self.cleaned_data["end"]
        try:
            return preview(scheduler, self.schedule, storage, start, end)
        except HephaestusError as error:
            self.add_error(None, f"{error}.")
            return None

    def is_confirmation(self) -> bool:
        return bool(self.cleaned_data.get("fingerprint"))


__all__ = ["MAX_BACKFILL", "BackfillForm", "Preview", "fingerprint", "preview"]
