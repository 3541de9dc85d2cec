"""``manage.py hephaestus_bulk <operation> <workflow> [filters] [options]``: apply one verb to
every instance the filters select, in batches, in the background (or here with ``--wait``).

The operation is stored (``hephaestus_bulk_operations``) and run by the worker, a batch per
pass (see :mod:`~hephaestus_django.runtime.bulk`): resumable, each instance operated once, a
report of what each became. ``--dry-run`` only counts the instances selected now;
``hephaestus_bulk --status <bulk id>`` shows an operation's progress and its refused instances.

Exit status: 0 when it worked (made, ran with nothing refused, counted, shown); 1 on bad input
(nothing written) or, with ``--wait``, when some instances were refused (listed); 2 on a
malformed command line.
"""

from __future__ import annotations

import argparse
import os
import socket
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from hephaestus_django.conf import runner as configured_runner
from hephaestus_django.conf import storages
from hephaestus_django.core.errors import HephaestusError
from hephaestus_django.core.instance import instance_key
from hephaestus_django.management.arguments import positive_int
from hephaestus_django.management.commands.hephaestus_graph import find_workflow
from hephaestus_django.runtime import bulk
from hephaestus_django.runtime.contract import BulkState

SHOWN_REFUSALS = 50
"""Refused instances listed by ``--status`` and ``--wait``, at most."""


def aware_time(text: str) -> datetime:
    """An ISO 8601 time with its UTC offset (``2026-12-07T10:00:00+00:00``, or ``...Z``)."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("give its UTC offset, e.g. 2026-12-07T10:00:00+00:00")
    return value


class Command(BaseCommand):
    help = (
        "Apply one operation (retry, cancel, rewind, upgrade, compensate, pause, unpause) to "
        "every instance of a workflow the filters select, in batches, in the background. "
        "Examples: hephaestus_bulk retry shop.workflows.Order --dry-run; "
        "hephaestus_bulk --status <bulk id>"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("operation", nargs="?", help=f"one of {', '.join(bulk.OPERATIONS)}")
        parser.add_argument("workflow", nargs="?", help="the workflow's dotted path or class name")
        parser.add_argument(
            "--status",
            action="append",
            dest="statuses",
            metavar="STATUS",
            help="select instances with this status (repeat for several; retry and compensate "
            "select failed ones, cancel and pause active ones, unless told). Without an "
            "operation: --status <bulk id> shows that bulk operation's progress",
        )
        parser.add_argument("--key", help="select the instance with this business key")
        parser.add_argument("--tag", help="select instances of the workflows with this tag")
        parser.add_argument(
            "--workflow-version", type=positive_int, help="select this workflow version"
        )
        parser.add_argument("--since", type=aware_time, help="made at or after (ISO 8601)")
        parser.add_argument("--until", type=aware_time, help="made before (ISO 8601)")
        parser.add_argument("--to", help="rewind: the step to rewind to")
        parser.add_argument("--to-version", type=positive_int, help="upgrade: the version")
        parser.add_argument("--reason", help="cancel: the reason kept with each instance")
        parser.add_argument(
            "--compensate",
            action="store_true",
            help="cancel, rewind: run the compensations of the steps undone first",
        )
        parser.add_argument("--batch-size", type=positive_int, default=bulk.DEFAULT_BATCH_SIZE)
        parser.add_argument("--dry-run", action="store_true", help="count, write nothing")
        parser.add_argument("--wait", action="store_true", help="run every batch here, then report")
        parser.add_argument(
            "--storage",
            default="default",
            help="storage alias in settings.HEPHAESTUS['STORAGES'] (default: default)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["storage"] not in storages.settings:
            raise CommandError(f"no storage named {options['storage']!r}")
        storage = storages[options["storage"]]
        try:
            if options["operation"] is None:
                self.show(storage, options["statuses"])
                return
            self.run_operation(storage, options)
        except HephaestusError as error:
            raise CommandError(str(error)) from None

    def show(self, storage: Any, statuses: list[str] | None) -> None:
        if not statuses or len(statuses) != 1 or instance_key(statuses[0]) is None:
            raise CommandError(
                "name an operation and a workflow (hephaestus_bulk retry shop.Order), or a bulk "
                "operation's id to see its progress (hephaestus_bulk --status <bulk id>)"
            )
        state = bulk.table(storage).bulk_state(statuses[0])
        self.report(storage, state)

    def run_operation(self, storage: Any, options: dict[str, Any]) -> None:
        name = options["operation"]
        if options["workflow"] is None:
            raise CommandError(f"name the workflow: hephaestus_bulk {name} <workflow>")
        workflow = find_workflow(options["workflow"])
        filters: dict[str, Any] = {}
        if options["statuses"]:
            filters["status_in"] = options["statuses"]
        for option, name_of_filter in (
            ("key", "key"),
            ("tag", "tag"),
            ("workflow_version", "workflow_version"),
            ("since", "since"),
            ("until", "until"),
        ):
            if options[option] is not None:
                filters[name_of_filter] = options[option]
        verb_options: dict[str, Any] = {}
        for option, name_of_option in (
            ("to", "to"),
            ("to_version", "to_version"),
            ("reason", "reason"),
        ):
            if options[option] is not None:
                verb_options[name_of_option] = options[option]
        if options["compensate"]:
            verb_options["compensate"] = True
        runner = configured_runner.get()
        request = bulk.spec(
            name,
            workflow,
            filters=filters,
            options=verb_options,
            batch_size=options["batch_size"],
            runner=runner,
        )
        if options["dry_run"]:
            count = bulk.count(storage, request)
            self.stdout.write(
                f"Dry run: {name} would take {count} instance(s) of {request.workflow} now."
            )
            return
        alias = None if options["wait"] else options["storage"]
        state = bulk.create(storage, request, runner=runner, alias=alias)
        self.stdout.write(f"Bulk operation {state.id}: {name} on {request.workflow}.")
        if not options["wait"]:
            self.stdout.write(
                f"The worker runs it; see its progress with hephaestus_bulk --status {state.id}"
            )
            return
        owner = f"hephaestus_bulk:{socket.gethostname()}:{os.getpid()}"
        lease = getattr(runner, "lease", timedelta(minutes=5))
        state = bulk.run_all(
            storage,
            runner,
            state.id,
            owner=owner,
            lease=lease,
            on_batch=lambda report: self.stdout.write(
                f"batch: {report.done} done, {report.refused} refused "
                f"({report.state.done + report.state.refused} so far)"
            ),
        )
        self.report(storage, state)
        if state.refused:
            raise CommandError(
                f"{state.refused} instance(s) refused (see above); fix what the reasons name "
                f"and run the operation again: it takes only the instances still selected"
            )

    def report(self, storage: Any, state: BulkState) -> None:
        remaining = "" if state.finished else f", cursor at {state.cursor or 'the start'}"
        self.stdout.write(
            f"Bulk operation {state.id}: {state.operation} on {state.workflow}, {state.status}: "
            f"{state.done} done, {state.refused} refused{remaining}."
        )
        if state.lease_owner and not state.finished:
            self.stdout.write(f"Run by {state.lease_owner} until {state.lease_expires_at}.")
        for instance_id, reason in bulk.table(storage).bulk_refusals(state.id, SHOWN_REFUSALS):
            self.stdout.write(f"refused {instance_id}: {reason}")
        if state.refused > SHOWN_REFUSALS:
            self.stdout.write(f"... and {state.refused - SHOWN_REFUSALS} more refused.")
