"""``manage.py hephaestus_status``: what runs, what is late, what failed; ``--check`` for probes.

The report is :func:`hephaestus_django.postgres.snapshot.snapshot`, the same answers the admin's
dashboard shows, in a bounded number of index reads whatever the table's size. ``--check`` compares
it with thresholds and exits with status 1 naming each one crossed, for a cron alert or a probe.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils import timezone

from hephaestus_django.core.naming import short_name
from hephaestus_django.management.arguments import database_of
from hephaestus_django.postgres.retention import parse_age
from hephaestus_django.postgres.snapshot import (
    COUNT_LIMIT,
    MAX_QUEUE_WAIT,
    MAX_STEP_WORKER_SILENCE,
    STALL_GRACE,
    STATEMENT_TIMEOUT_MS,
    STATUSES,
    Count,
    Snapshot,
    duration,
    queue_verdict,
    snapshot,
    step_worker_verdict,
    timed_out,
)

OFF = "off"

DEFAULT_MAX_OVERDUE = "5m"
DEFAULT_MAX_STALLED = "0"
DEFAULT_MAX_QUARANTINED = "0"
DEFAULT_MAX_FAILED_LAST_HOUR = OFF
DEFAULT_MAX_WORKER_SILENCE = "2m"
DEFAULT_MAX_QUEUE_WAIT = duration(MAX_QUEUE_WAIT)
DEFAULT_MAX_STEP_WORKER_SILENCE = duration(MAX_STEP_WORKER_SILENCE)


def duration_or_off(text: str) -> timedelta | None:
    """``30s``, ``5m``, ``2h``... (as hephaestus_prune's ages), or ``off``."""
    if text.strip().lower() == OFF:
        return None
    try:
        return parse_age(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{error} (or 'off')") from None


def count_or_off(text: str) -> int | None:
    """A number of instances, 0 included, or ``off``."""
    if text.strip().lower() == OFF:
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or 'off', not {text!r}") from None
    if value < 0 or value > COUNT_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 0 and {COUNT_LIMIT:,}, not {value}")
    return value


@dataclass(frozen=True)
class Verdict:
    """One threshold, what was measured, and whether it was crossed."""

    option: str
    limit: str
    measured: str
    crossed: bool

    def line(self) -> str:
        mark = "CROSSED" if self.crossed else "ok"
        return f"{mark:8}{self.option} {self.limit}: {self.measured}"

    def as_json(self) -> dict[str, Any]:
        return {
            "threshold": self.option.removeprefix("--"),
            "limit": self.limit,
            "measured": self.measured,
            "crossed": self.crossed,
        }


def verdicts(found: Snapshot, options: dict[str, Any]) -> list[Verdict]:
    """Each threshold that is not ``off``, checked against ``found``."""
    result = []
    overdue: timedelta | None = options["max_overdue"]
    if overdue is not None:
        lateness = found.worst_lateness
        measured = (
            "no timer is overdue"
            if lateness is None
            else f"{found.overdue} overdue, the worst by {duration(lateness)}"
        )
        crossed = lateness is not None and lateness > overdue
        result.append(Verdict("--max-overdue", duration(overdue), measured, crossed))
    for option, key, count, what in (
        ("--max-stalled", "max_stalled", found.stalled, "stalled"),
        ("--max-quarantined", "max_quarantined", found.quarantined, "quarantined"),
        ("--max-failed-last-hour", "max_failed_last_hour", found.failed_last_hour, "failed"),
    ):
        limit: int | None = options[key]
        if limit is not None:
            result.append(Verdict(option, str(limit), f"{count} {what}", exceeds(count, limit)))
    silence_limit: timedelta | None = options["max_worker_silence"]
    if silence_limit is not None:
        silence = found.worker_silence
        measured = (
            "no worker pass was ever recorded"
            if silence is None
            else f"the last worker pass was {duration(silence)} ago"
        )
        crossed = silence is None or silence > silence_limit
        result.append(Verdict("--max-worker-silence", duration(silence_limit), measured, crossed))
    # QueuedRunner only: whether its jobs are taken (with LocalRunner the sweep runs the steps,
    # and --max-stalled and --max-worker-silence say when it does not).
    for option, key, judge in (
        ("--max-queue-wait", "max_queue_wait", queue_verdict),
        ("--max-step-worker-silence", "max_step_worker_silence", step_worker_verdict),
    ):
        limit_: timedelta | None = options[key]
        if limit_ is None:
            continue
        judged = judge(found, limit_)
        if judged is not None:
            result.append(Verdict(option, duration(limit_), judged.measured, judged.crossed))
    return result


def exceeds(count: Count, limit: int) -> bool:
    """Whether ``count`` is surely above ``limit`` (a floor or an estimate counts as its value)."""
    return count.value > limit


class Command(BaseCommand):
    help = (
        "Report workflow instances per workflow and status, overdue timers, stalled and "
        "quarantined instances, failures and errors, and the last worker pass. --check exits "
        "with status 1 when a threshold is crossed (for a cron alert or a probe); --json "
        "prints the report for machines."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--storage",
            help="storage alias in settings.HEPHAESTUS['STORAGES'] whose database to report on "
            "(default: 'default'); only workers that served it are listed",
        )
        parser.add_argument("--database", help="database alias to report on (not with --storage)")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument(
            "--check",
            action="store_true",
            help="check the thresholds below, print one line each, exit 1 if any is crossed",
        )
        parser.add_argument(
            "--max-overdue",
            type=duration_or_off,
            default=duration_or_off(DEFAULT_MAX_OVERDUE),
            metavar="AGE",
            help="how late the most overdue timer may be, e.g. 30s, 5m "
            f"(default: {DEFAULT_MAX_OVERDUE}; 'off' to skip)",
        )
        parser.add_argument(
            "--max-stalled",
            type=count_or_off,
            default=count_or_off(DEFAULT_MAX_STALLED),
            metavar="N",
            help="running instances whose lease lapsed more than "
            f"{duration(STALL_GRACE)} ago (default: {DEFAULT_MAX_STALLED})",
        )
        parser.add_argument(
            "--max-quarantined",
            type=count_or_off,
            default=count_or_off(DEFAULT_MAX_QUARANTINED),
            metavar="N",
            help=f"instances a worker could not decode (default: {DEFAULT_MAX_QUARANTINED})",
        )
        parser.add_argument(
            "--max-failed-last-hour",
            type=count_or_off,
            default=count_or_off(DEFAULT_MAX_FAILED_LAST_HOUR),
            metavar="N",
            help=f"instances failed in the last hour (default: {DEFAULT_MAX_FAILED_LAST_HOUR})",
        )
        parser.add_argument(
            "--max-worker-silence",
            type=duration_or_off,
            default=duration_or_off(DEFAULT_MAX_WORKER_SILENCE),
            metavar="AGE",
            help="time since the last recorded worker pass; no pass ever recorded crosses it "
            f"(default: {DEFAULT_MAX_WORKER_SILENCE}; 'off' to skip)",
        )
        parser.add_argument(
            "--max-queue-wait",
            type=duration_or_off,
            default=MAX_QUEUE_WAIT,
            metavar="AGE",
            help="QueuedRunner: how long a due job may wait in the job engine's queue for a "
            f"worker (default: {DEFAULT_MAX_QUEUE_WAIT}; 'off' to skip)",
        )
        parser.add_argument(
            "--max-step-worker-silence",
            type=duration_or_off,
            default=MAX_STEP_WORKER_SILENCE,
            metavar="AGE",
            help="QueuedRunner: how long no step worker (procrastinate's worker, db_worker) may "
            "be seen; a db_worker is seen only by the jobs it takes, so it counts only while a "
            f"job waits that long (default: {DEFAULT_MAX_STEP_WORKER_SILENCE}; 'off' to skip)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        using = database_of(options["storage"], options["database"])
        only = [options["storage"]] if options["storage"] else None
        try:
            found = snapshot(using, storages=only)
        except DatabaseError as error:
            if timed_out(error):
                raise CommandError(
                    f"the status queries took longer than {STATEMENT_TIMEOUT_MS} ms on "
                    f"database {using!r}",
                    returncode=2,
                ) from error
            raise
        checked = verdicts(found, options) if options["check"] else []
        if options["json"]:
            document = found.as_json()
            if options["check"]:
                document["check"] = {
                    "ok": not any(v.crossed for v in checked),
                    "thresholds": [v.as_json() for v in checked],
                }
            self.stdout.write(json.dumps(document, indent=2))
        elif options["check"]:
            for verdict in checked:
                self.stdout.write(verdict.line())
        else:
            self.stdout.write(report(found))
        crossed = [v for v in checked if v.crossed]
        if crossed:
            raise CommandError(
                "threshold crossed: "
                + "; ".join(f"{v.option} {v.limit} ({v.measured})" for v in crossed),
                returncode=1,
            )


def _time(moment: Any) -> str:
    shown = timezone.localtime(moment) if settings.USE_TZ else moment
    return shown.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def report(found: Snapshot) -> str:
    """The readable report: a table of counts, then one line per question."""
    lines = [f"Workflow instances in database {found.using!r}, at {_time(found.now)}", ""]
    names = [short_name(row.workflow) for row in found.by_workflow]
    labels = [
        name if names.count(name) == 1 else row.workflow
        for name, row in zip(names, found.by_workflow, strict=True)
    ]
    width = max([len("workflow"), len("total"), *map(len, labels)])
    columns = [max(len(s), 9) for s in STATUSES]
    header = "  ".join(s.rjust(w) for s, w in zip(STATUSES, columns, strict=True))
    lines.append(f"{'workflow'.ljust(width)}  {header}")
    for label, row in zip(labels, found.by_workflow, strict=True):
        cells = [
            _cell(row.statuses.get(s)).rjust(w) for s, w in zip(STATUSES, columns, strict=True)
        ]
        lines.append(f"{label.ljust(width)}  {'  '.join(cells)}")
    totals = [_cell(found.by_status[s]).rjust(w) for s, w in zip(STATUSES, columns, strict=True)]
    lines.append(f"{'total'.ljust(width)}  {'  '.join(totals)}")
    if any(c.kind != "exact" for c in found.by_status.values()):
        lines.append("(~N: PostgreSQL's estimate; >N: more than N; ?: too few to estimate)")
    lines.append("")

    lateness = found.worst_lateness
    overdue = (
        "none"
        if lateness is None
        else f"{found.overdue}, the most overdue by {duration(lateness)} "
        f"(due {_time(found.oldest_due_at)})"
    )
    stall = found.longest_stall
    stalled = (
        f"{found.stalled}"
        if stall is None
        else f"{found.stalled}, the longest lease lapsed {duration(stall)} ago"
    )
    last = found.last_pass
    silence = found.worker_silence
    worker = (
        "never recorded: is hephaestus_worker running?"
        if last is None or silence is None
        else f"{duration(silence)} ago, by {last.worker} on {last.storage} "
        f"({last.handled:,} instance(s) moved on since {_time(last.started_at)})"
    )
    queue_rows = []
    queue = found.queue
    if queue is not None:
        judged = queue_verdict(found)
        seen = step_worker_verdict(found)
        where = f"{queue.engine}, queue {queue.queue!r} in database {queue.database!r}"
        queue_rows = [
            ("Job queue", f"{judged.measured if judged else '?'} ({where})"),
            ("Step workers", seen.measured if seen else "?"),
        ]
    rows = [
        ("Overdue timers", overdue),
        ("Stalled instances", f"{stalled} (running, lease lapsed over {duration(STALL_GRACE)})"),
        ("Quarantined", str(found.quarantined)),
        ("Failed, last hour", str(found.failed_last_hour)),
        ("Last worker pass", worker),
        *queue_rows,
    ]
    pad = max(len(name) for name, _ in rows) + 2
    lines += [f"{(name + ':').ljust(pad)}{text}" for name, text in rows]
    for item in found.quarantined_latest:
        lines.append(f"  quarantined {item.id} ({short_name(item.workflow)}): {item.reason}")
    if found.limits:
        lines += ["", "Concurrency limits (slots in use / slots, waiting):"]
        for use in found.limits:
            key = f", key {use.key!r}" if use.key else ""
            lines.append(
                f"  {use.name}{key}: {use.holding}/{use.limit} in use, {use.waiting} waiting"
            )
    if found.errors:
        sample = " (the latest of them)" if found.errors_capped else ""
        lines += ["", f"Most frequent errors, last 24 h, of {found.errors_sampled:,}{sample}:"]
        for error in found.errors:
            step = f" at {short_name(error.step)}" if error.step else ""
            lines.append(f"  {error.count:>6,}  {error.type}{step}: {error.message}")
    else:
        lines += ["", "No failures in the last 24 h."]
    return "\n".join(lines)


def _cell(count: Count | None) -> str:
    if count is None:
        return "?"
    if count.kind == "about":
        return f"~{count.value:,}"
    if count.kind == "more_than":
        return f">{count.value:,}"
    return f"{count.value:,}"
