"""``manage.py hephaestus_schedules``: list, pause, resume, trigger and backfill schedules."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from hephaestus_django.conf import scheduler, storages
from hephaestus_django.core.errors import HephaestusError
from hephaestus_django.worker import prune_schedules


def aware_datetime(text: str) -> datetime:
    """An ISO 8601 time; without an offset, read in Django's ``TIME_ZONE``."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time such as 2025-01-31T02:00 or 2025-01-31T02:00+01:00"
        ) from None
    return value if value.tzinfo is not None else timezone.make_aware(value)


class Command(BaseCommand):
    help = (
        "The schedules of settings.HEPHAESTUS['SCHEDULES']: list them with their next and last "
        "tick, pause or resume one, start one now (trigger), or start each tick of a past range "
        "(backfill; a tick already started is not started again), or remove the records of "
        "schedules no longer configured (prune)."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        actions.add_parser("list", help="every schedule, its state, last and next tick")
        for name, text in (
            ("pause", "stop a schedule's ticks until it is resumed"),
            ("resume", "start a schedule's ticks again, from now on"),
            ("trigger", "start a schedule's workflow now (its ticks are unchanged)"),
        ):
            actions.add_parser(name, help=text).add_argument("name")
        actions.add_parser(
            "prune", help="remove the records of schedules no longer in the settings"
        )
        backfill = actions.add_parser("backfill", help="start each tick of a past range")
        backfill.add_argument("name")
        backfill.add_argument("--from", dest="start", type=aware_datetime, required=True)
        backfill.add_argument("--to", dest="end", type=aware_datetime, required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        schedules = scheduler()
        action = options["action"]
        try:
            if action == "list":
                self._list(schedules)
                return
            if action == "prune":
                removed = sorted({n for names in prune_schedules().values() for n in names})
                self.stdout.write(
                    f"Removed the records of {', '.join(removed)}."
                    if removed
                    else "No record of a removed schedule."
                )
                return
            schedule = schedules.get(options["name"])
            storage = storages[schedule.storage]
            if action == "pause":
                changed = schedules.pause(schedule.name, storage)
                self.stdout.write(f"Paused {schedule.name}." if changed else "Already paused.")
            elif action == "resume":
                changed = schedules.resume(schedule.name, storage)
                self.stdout.write(f"Resumed {schedule.name}." if changed else "Not paused.")
            elif action == "trigger":
                started = schedules.trigger(schedule.name, storage)
                self.stdout.write(f"Started {started.instance_id}.")
            else:
                ticks = schedules.backfill(schedule.name, storage, options["start"], options["end"])
                for tick in ticks:
                    said = "started" if tick.new else "already started"
                    self.stdout.write(f"{tick.tick.isoformat()}  {tick.instance_id}  {said}")
                new = sum(tick.new for tick in ticks)
                self.stdout.write(f"Backfilled {len(ticks)} tick(s): {new} started.")
        except HephaestusError as error:
            raise CommandError(str(error)) from error

    def _list(self, schedules: Any) -> None:
        if not schedules.schedules:
            self.stdout.write("No schedules (settings.HEPHAESTUS['SCHEDULES']).")
            return
        by_storage: dict[str, Any] = {}
        for schedule in schedules.schedules.values():
            by_storage.setdefault(schedule.storage, []).append(schedule)
        for alias in by_storage:
            storage = storages[alias]
            states = schedules.states(alias, storage)
            now = storage.now()
            for schedule in by_storage[alias]:
                state = states[schedule.name]
                tick = state.last_tick
                last = "-" if tick is None else tick.astimezone(schedule.zone).isoformat()
                upcoming = "paused" if state.paused else schedule.next_tick(now).isoformat()
                self.stdout.write(
                    f"{schedule.name}  {schedule.cron!r} {schedule.timezone}  "
                    f"{schedule.workflow}  last: {last}  next: {upcoming}"
                )
