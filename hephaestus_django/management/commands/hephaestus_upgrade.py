"""``manage.py hephaestus_upgrade <workflow> --from 1 --to 2``: upgrade a versioned workflow's
instances of one version to a newer one, in batches.

Each instance is upgraded on its own, under its row lock, by the ``upgrade_from`` the newer
version declares (``Workflow.upgrade``): so an upgrade never races a resume, and one instance the
upgrade does not cover is reported and left as it is, the others go on. Instances are taken in
id order, ``--batch-size`` at a time (a keyset on the id, so a batch costs the same wherever it
is in the table). It is resumable: only instances still at ``--from`` are selected, so running
it again after an interruption, or after fixing what refused some, goes on where it stopped.

The report counts the upgraded, the refused (one line each, with the reason) and the errors
(an instance that could not be read, say); the exit status is 1 when any was refused or failed,
so a deploy script notices.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.core.management.base import BaseCommand, CommandError

from hephaestus_django.core.errors import HephaestusError, InvalidInstanceError, UpgradeError
from hephaestus_django.management.arguments import database_of, positive_int
from hephaestus_django.management.commands.hephaestus_graph import find_workflow
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.runtime.workflow import VersionedWorkflow


@dataclass
class UpgradeReport:
    """What a run of the command did."""

    upgraded: int = 0
    refused: list[tuple[UUID, str]] = field(default_factory=list)
    errors: list[tuple[UUID, str]] = field(default_factory=list)
    batches: int = 0


class Command(BaseCommand):
    help = (
        "Upgrade the instances of a versioned workflow at version --from to version --to (by "
        "the upgrade_from that version declares), in batches; resumable. Example: "
        "hephaestus_upgrade shop.workflows.Onboarding --from 1 --to 2 --dry-run"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "workflow",
            help="the versioned workflow's dotted path, or its class name if no other "
            "registered workflow has it",
        )
        parser.add_argument(
            "--from", dest="from_version", type=positive_int, required=True, help="e.g. 1"
        )
        parser.add_argument(
            "--to",
            dest="to_version",
            type=positive_int,
            default=None,
            help="the version to upgrade to (default: the workflow's current version)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="compute every upgrade and report, write nothing",
        )
        parser.add_argument("--batch-size", type=positive_int, default=500)
        parser.add_argument(
            "--storage",
            default="default",
            help="storage alias in settings.HEPHAESTUS['STORAGES'] (default: default)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        workflow = find_workflow(options["workflow"])
        if not issubclass(workflow, VersionedWorkflow):
            raise CommandError(
                f"{workflow.path()} is not a versioned workflow (a VersionedWorkflow naming its "
                f"versions): it has nothing to upgrade to"
            )
        source, target = options["from_version"], options["to_version"]
        try:
            to = workflow.starting(target)
        except InvalidInstanceError as error:
            raise CommandError(f"--to: {error}") from None
        if source >= to.version:
            raise CommandError(f"--from {source} must be an earlier version than --to {to.version}")
        alias = options["storage"]
        using = database_of(alias, None)
        dry_run = options["dry_run"]
        report = self.upgrade_all(
            workflow, source, to.version, alias, using, options["batch_size"], dry_run
        )
        what = "would be upgraded" if dry_run else "upgraded"
        self.stdout.write(
            f"{'Dry run: ' if dry_run else ''}{workflow.path()} version {source} -> "
            f"{to.version}: {report.upgraded} {what}, {len(report.refused)} refused, "
            f"{len(report.errors)} error(s), in {report.batches} batch(es)."
        )
        if report.refused or report.errors:
            raise CommandError(
                f"{len(report.refused)} instance(s) refused and {len(report.errors)} error(s): "
                f"they are left at version {source} (see above); fix what the reasons name and "
                f"run the command again to go on"
            )

    def upgrade_all(
        self,
        workflow: type[VersionedWorkflow],
        source: int,
        target: int,
        alias: str,
        using: str,
        batch_size: int,
        dry_run: bool,
    ) -> UpgradeReport:
        report = UpgradeReport()
        rows = WorkflowInstance.objects.using(using).filter(
            workflow=workflow.path(), workflow_version=source
        )
        after: UUID | None = None
        while True:
            page = rows if after is None else rows.filter(id__gt=after)
            batch = list(page.order_by("id").values_list("id", flat=True)[:batch_size])
            if not batch:
                return report
            report.batches += 1
            for instance_id in batch:
                self.upgrade_one(workflow, instance_id, target, alias, dry_run, report)
            after = batch[-1]

    def upgrade_one(
        self,
        workflow: type[VersionedWorkflow],
        instance_id: UUID,
        target: int,
        alias: str,
        dry_run: bool,
        report: UpgradeReport,
    ) -> None:
        try:
            workflow.upgrade(instance_id, to_version=target, dry_run=dry_run, storage=alias)
        except UpgradeError as error:
            report.refused.append((instance_id, error.reason))
            self.stdout.write(f"refused {instance_id}: {error.reason}")
        except HephaestusError as error:
            report.errors.append((instance_id, str(error)))
            self.stdout.write(f"error {instance_id}: {type(error).__name__}: {error}")
        else:
            report.upgraded += 1
