"""The ``workflow_instances`` table, for the ORM, migrations and the admin.

Storage goes through :class:`~hephaestus_django.postgres.storage.DjangoStorage`; this
model is how the same rows are reached with the ORM: filter on columns, or on
values inside the JSONB ``state`` with ``state__contains`` (answered through the
GIN index), and turn rows back into engine instances with ``to_instance()``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from django.contrib.postgres.indexes import GinIndex
from django.core.exceptions import EmptyResultSet
from django.db import connections, models
from django.db.models.functions import Now
from django.db.models.sql.compiler import SQLCompiler

from hephaestus_django.core.instance import Instance
from hephaestus_django.core.keys import MAX_KEY_LENGTH
from hephaestus_django.core.status import Status
from hephaestus_django.core.steps import Step
from hephaestus_django.core.workflow import WorkflowDefinition, tagged
from hephaestus_django.postgres.cursors import fetch_all
from hephaestus_django.postgres.retention import INDEXED_STATUSES
from hephaestus_django.postgres.sql import FIELDS
from hephaestus_django.postgres.storage import stored_row
from hephaestus_django.runtime import codec
from hephaestus_django.runtime.document import StoredRow, decode_rows, from_row
from hephaestus_django.runtime.filters import schedule_document, status_value, workflow_name
from hephaestus_django.serialization import HephaestusJSONDecoder, HephaestusJSONEncoder

GIN_PENDING_LIST_KB = 256
"""``gin_pending_list_limit`` of the GIN index on ``state``, in kB."""


class WorkflowInstanceQuerySet(models.QuerySet["WorkflowInstance"]):
    """Verbs for the questions people ask of instances."""

    def with_status(self, *statuses: Status | str) -> WorkflowInstanceQuerySet:
        return self.filter(status__in=[status_value(status) for status in statuses])

    def running(self) -> WorkflowInstanceQuerySet:
        return self.with_status(Status.RUNNING)

    def waiting(self) -> WorkflowInstanceQuerySet:
        return self.with_status(Status.WAITING)

    def completed(self) -> WorkflowInstanceQuerySet:
        return self.with_status(Status.COMPLETED)

    def failed(self) -> WorkflowInstanceQuerySet:
        return self.with_status(Status.FAILED)

    def cancelled(self) -> WorkflowInstanceQuerySet:
        return self.with_status(Status.CANCELLED)

    def of_workflow(self, workflow: type | str) -> WorkflowInstanceQuerySet:
        """Instances of one workflow, given as its class or dotted path: a versioned
        workflow's are those of every version, a version class's those of its version."""
        found = self.filter(workflow=workflow_name(workflow, "workflow"))
        if (
            isinstance(workflow, type)
            and issubclass(workflow, WorkflowDefinition)
            and workflow.umbrella() is not None
        ):
            found = found.filter(workflow_version=workflow.version)
        return found

    def tagged(self, tag: str) -> WorkflowInstanceQuerySet:
        """Instances of the workflows carrying ``tag`` (resolved through the registry)."""
        return self.filter(workflow__in=tagged(tag))

    def of_schedule(self, name: str) -> WorkflowInstanceQuerySet:
        """Instances the schedule ``name`` started (its ticks, triggers and backfills), by
        ``runtime_metadata["schedule"]["name"]`` (``state @> ...``, through the GIN index)."""
        return self.filter(state__contains=schedule_document(name))

    def with_context(
        self, values: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> WorkflowInstanceQuerySet:
        """Instances whose initial context contains these values (``state @> ...``).

        ``with_context(order_id=123)`` or ``with_context({"customer": {"tier": "gold"}})``.
        Values are encoded like stored ones, so dates, Decimals and UUIDs match too.
        """
        wanted = {**(values or {}), **fields}
        return self.filter(state__contains={"context": {"initial": wanted}})

    def with_result(
        self, step: type[Step] | str, values: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> WorkflowInstanceQuerySet:
        """Instances where a step's result contains these values (``state @> ...``).

        ``with_result(Ship, tracking="TRK-9")``; the step is given as its class or ``step_key``.
        """
        key = step if isinstance(step, str) else step.step_key
        wanted = {**(values or {}), **fields}
        return self.filter(state__contains={"context": {"steps": {key: wanted}}})

    def to_instances(self) -> list[Instance]:
        """Decode the rows into engine instances; undecodable rows are left out and logged."""
        # The queryset only says which rows: they are read the way DjangoStorage reads them,
        # as tuples in its column order with the state as JSON text (Django's psycopg adapters
        # load jsonb as text), without a model object or a field converter per row.
        compiled = _rows_sql(self)
        if compiled is None:
            return []
        found = fetch_all(connections[self.db], *compiled)
        return decode_rows(found, stored_row)


def _rows_sql(queryset: models.QuerySet[Any]) -> tuple[str, Any] | None:
    """The SQL reading the queryset's rows as the columns of ``FIELDS``; None if it reads none.

    A queryset of whole rows selects those very columns, in that order (``FIELDS`` follows the
    model), so it is compiled as it is: asking for them with ``values_list`` would select the
    same and cost a queryset copy and a lookup per column, more than compiling the query
    itself. One whose select differs (``only()``, ``annotate()``, ``values()``...) is asked for
    them explicitly, at the cost of a second compile: the compiled select is the one public-enough
    place that says what a queryset selects, and narrowing a queryset only to decode whole rows
    is rare.
    """
    try:
        compiler = queryset.query.get_compiler(using=queryset.db)
        sql, params = compiler.as_sql()
        if _selected_columns(compiler) != FIELDS:
            compiler = queryset.values_list(*FIELDS).query.get_compiler(using=queryset.db)
            sql, params = compiler.as_sql()
    except EmptyResultSet:
        return None
    return sql, params


def _selected_columns(compiler: SQLCompiler) -> tuple[str | None, ...]:
    """The columns a compiled query selects, None for anything that is not a plain column."""
    return tuple(
        getattr(getattr(expression, "target", None), "column", None)
        for expression, _, _ in compiler.select
    )


class WorkflowInstance(models.Model):
    """One workflow instance: its columns, and the rest of it as JSONB in ``state``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workflow = models.CharField(max_length=255, help_text="The workflow class's dotted path.")
    status = models.CharField(max_length=16, choices=[(s.value, s.value) for s in Status])
    workflow_version = models.IntegerField(default=1, db_default=1)
    state = models.JSONField(encoder=HephaestusJSONEncoder, decoder=HephaestusJSONDecoder)
    revision = models.IntegerField(
        default=1, db_default=1, help_text="Bumped by every write; stale writes are refused."
    )
    inserted_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())
    due_at = models.DateTimeField(
        null=True, blank=True, help_text="The earliest timer of the waiting steps."
    )
    # NULL, not "", means "no lease": the workers' claim query reads it that way.
    lease_owner = models.CharField(  # noqa: DJ001
        max_length=255, null=True, blank=True, help_text="The runner executing the steps now."
    )
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="When a worker may take over from that runner."
    )
    # NULL, not "": the workers' claim query skips rows where it is set.
    quarantine_reason = models.TextField(  # noqa: DJ001
        null=True,
        blank=True,
        help_text=(
            "Why a worker could not decode this instance: it is not claimed again until the "
            "next write clears this."
        ),
    )

    # NULL, not "": most instances have no key, and the indexes below skip NULLs.
    business_key = models.CharField(  # noqa: DJ001
        max_length=MAX_KEY_LENGTH,
        null=True,
        blank=True,
        help_text="The caller's own name for the instance (start(..., key=...)).",
    )
    # In a column of its own, no index covers it: a job marking its step writes this alone,
    # an update PostgreSQL makes in place (see postgres.sql.MARK_RUNNING).
    running = models.JSONField(
        null=True,
        blank=True,
        editable=False,
        help_text=(
            "Where and since when QueuedRunner's jobs run the instance's steps: step path -> "
            "{'on': host:pid, 'since': ISO 8601}; empty while no job runs one."
        ),
    )
    key_claim = models.TextField(  # noqa: DJ001
        null=True,
        blank=True,
        editable=False,
        help_text=(
            "The scope, workflow and key while the instance holds its business key: unique, so "
            "two instances cannot hold one key at once."
        ),
    )

    objects = WorkflowInstanceQuerySet.as_manager()

    class Meta:
        db_table = "workflow_instances"
        verbose_name = "workflow instance"
        # Operations in the admin, beyond Django's view/delete: each has its own permission.
        permissions = [
            ("resume_workflowinstance", "Can resume a waiting workflow instance"),
            ("retry_workflowinstance", "Can retry a failed workflow instance"),
            ("cancel_workflowinstance", "Can cancel a workflow instance"),
            ("upgrade_workflowinstance", "Can upgrade a workflow instance to a newer version"),
            ("rewind_workflowinstance", "Can rewind a workflow instance to an earlier step"),
            ("fork_workflowinstance", "Can fork a workflow instance from one of its steps"),
            ("pause_workflowinstance", "Can pause and unpause workflow instances"),
        ]
        indexes = [
            # A 256 kB pending list (PostgreSQL's default is 4 MB): new entries are merged into
            # the index a little at a time, so no write stalls for long on a merge. `make bench`
            # measures the choice; the README's "Performance" section has the figures.
            GinIndex(
                fields=["state"],
                name="idx_workflow_instances_state",
                opclasses=["jsonb_path_ops"],
                gin_pending_list_limit=GIN_PENDING_LIST_KB,
            ),
            # The admin's list (newest first) and query()'s order, without sorting the table.
            models.Index(fields=["inserted_at", "id"], name="idx_workflow_instances_ins"),
            models.Index(fields=["status"], name="idx_workflow_instances_status"),
            # pattern ops: the same index answers workflow = %s and the LIKE of workflow_family
            models.Index(
                fields=["workflow"],
                name="idx_workflow_instances_wf",
                opclasses=["varchar_pattern_ops"],
            ),
            models.Index(
                fields=["workflow", "workflow_version"], name="idx_workflow_instances_wf_ver"
            ),
            # What workers poll for: due timers, and running instances whose runner may be gone.
            models.Index(
                fields=["due_at"],
                name="idx_workflow_instances_due",
                condition=models.Q(due_at__isnull=False),
            ),
            models.Index(
                fields=["lease_expires_at"],
                name="idx_workflow_instances_stall",
                condition=models.Q(status="running"),
            ),
            # hephaestus_prune's batches: one status at a time, oldest first, each batch
            # starting after the last (updated_at, id) deleted. Partial: only the statuses a
            # runner never writes, so the writes of running instances do not pay for it.
            # Workflow.get(key=...), resume(key=...), query(key=...), the admin's key search.
            models.Index(
                fields=["business_key"],
                name="idx_workflow_instances_key",
                condition=models.Q(business_key__isnull=False),
            ),
            models.Index(
                fields=["status", "updated_at", "id"],
                name="idx_workflow_instances_prune",
                condition=models.Q(status__in=list(INDEXED_STATUSES)),
            ),
            # hephaestus_status and the admin's dashboard: quarantined rows, counted without
            # reading the table (few rows, so a tiny index).
            models.Index(
                fields=["updated_at"],
                name="idx_workflow_instances_quar",
                condition=models.Q(quarantine_reason__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=[status.value for status in Status]),
                name="workflow_instances_status_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(workflow_version__gte=1),
                name="workflow_instances_version_positive",
            ),
            # One holder per business key in its scope; a start that finds the key held gets
            # the holder's id (postgres.sql.INSERT) instead of a second instance.
            models.UniqueConstraint(
                fields=["key_claim"],
                name="workflow_instances_key_claim",
                condition=models.Q(key_claim__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workflow.rsplit('.', 1)[-1]} {self.id} ({self.status})"

    def stored_row(self, state: codec.JSON | None = None, *, plain: bool = False) -> StoredRow:
        """The row as storage backends see it: columns plus the state in its JSON form.

        ``plain`` says ``state`` was just parsed from text :func:`codec.is_plain` accepts.
        """
        return StoredRow(
            id=self.id,
            workflow=self.workflow,
            status=self.status,
            workflow_version=self.workflow_version,
            state=codec.encode(self.state, instance_id=self.id) if state is None else state,
            revision=self.revision,
            inserted_at=self.inserted_at,
            updated_at=self.updated_at,
            lease_owner=self.lease_owner,
            lease_expires_at=self.lease_expires_at,
            due_at=self.due_at,
            quarantine_reason=self.quarantine_reason,
            running=self.running,
            plain=plain and state is not None,
        )

    def to_instance(self) -> Instance:
        """The engine instance this row stores; ``CorruptInstanceError`` if it does not decode."""
        return from_row(self.stored_row())


class WorkerPass(models.Model):
    """The last pass of one worker process on one storage: whether any worker runs.

    Written by :class:`~hephaestus_django.postgres.worker_passes.PassRecorder` at most once every
    ``RECORD_EVERY`` seconds per worker and storage (one upsert of one small row), in the
    database of the storage the pass served, so ``hephaestus_status`` and the admin's dashboard
    read it where they read the instances. Rows of workers not seen for a week are deleted by
    the same upsert.
    """

    worker = models.CharField(max_length=255, help_text="host:pid of the worker process.")
    storage = models.CharField(max_length=255, help_text="The storage alias the pass served.")
    role = models.CharField(
        max_length=16,
        default="sweep",
        db_default="sweep",
        help_text="'sweep': a pass of hephaestus_worker; 'jobs': jobs a job engine's worker "
        "(procrastinate, db_worker) received for QueuedRunner.",
    )
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    started_at = models.DateTimeField(db_default=Now(), help_text="The worker's first pass.")
    last_pass_at = models.DateTimeField(db_default=Now(), help_text="Its latest recorded pass.")
    passes = models.BigIntegerField(default=0, help_text="Passes since it started.")
    handled = models.BigIntegerField(default=0, help_text="Instances it moved on since it started.")

    class Meta:
        db_table = "hephaestus_worker_passes"
        verbose_name = "worker pass"
        constraints = [
            models.UniqueConstraint(
                fields=["worker", "storage", "role"], name="hephaestus_worker_passes_role"
            ),
        ]
        indexes = [
            models.Index(fields=["last_pass_at"], name="hephaestus_worker_passes_at"),
        ]

    def __str__(self) -> str:
        return f"{self.role} worker {self.worker} on {self.storage}"


class WorkflowMapItem(models.Model):
    """One item of a map step (:class:`~hephaestus_django.core.maps.Map`) of an instance: where
    it stands, and its result once done.

    Written by :class:`~hephaestus_django.postgres.storage.DjangoStorage` (its ``MapItems``), one
    row per item, so that an item's result never rewrites the instance's state nor the other
    items; the list goes into the state once, at the map's join. The rows go with their instance
    (a foreign key ``ON DELETE CASCADE``, added by migration 0014 in SQL).
    """

    instance = models.ForeignKey(
        WorkflowInstance,
        on_delete=models.DO_NOTHING,  # the database cascades (see the migration)
        db_constraint=False,
        db_index=False,  # the unique constraint's index starts with it
        related_name="map_items",
    )
    step = models.CharField(max_length=255, help_text="The map step's dotted path.")
    item_index = models.IntegerField(help_text="The item's position in the list.")
    done = models.BooleanField(default=False, help_text="Its result is recorded.")
    attempts = models.IntegerField(default=0, help_text="How many of its attempts failed.")
    failed = models.BooleanField(
        default=False, db_default=False, help_text="It failed for good (its step fails)."
    )
    running = models.BooleanField(
        default=False, db_default=False, help_text="Its item job runs it (QueuedRunner)."
    )
    result = models.JSONField(
        null=True, encoder=HephaestusJSONEncoder, decoder=HephaestusJSONDecoder
    )

    class Meta:
        db_table = "workflow_map_items"
        verbose_name = "map item"
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "step", "item_index"], name="workflow_map_items_item"
            ),
        ]
        indexes = [
            # The items running or failed for good, a few whatever the length of the list:
            # what each item job reads before it starts and when it ends, in one index probe.
            models.Index(
                fields=["instance", "step"],
                condition=models.Q(failed=True) | models.Q(running=True),
                name="workflow_map_items_live",
            ),
        ]

    def __str__(self) -> str:
        return f"item {self.item_index} of {self.step} in {self.instance_id}"


class ScheduleRecord(models.Model):
    """The state every worker shares of one schedule of ``settings.HEPHAESTUS["SCHEDULES"]``.

    Made by the first worker pass that sees the schedule; written by
    :mod:`~hephaestus_django.postgres.schedules` only (one statement each). What a schedule does
    lives in the setting; this row says whether it is paused and which tick ran last, so both
    hold across restarts and between workers.
    """

    name = models.CharField(max_length=255, primary_key=True, help_text="The schedule's name.")
    paused = models.BooleanField(default=False, db_default=False)
    since = models.DateTimeField(
        db_default=Now(), help_text="Ticks after this count: when made, or last resumed."
    )
    last_tick = models.DateTimeField(null=True, help_text="The latest tick started.")
    next_due_at = models.DateTimeField(null=True, help_text="The next tick, when last computed.")
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "hephaestus_schedules"
        verbose_name = "schedule"
        permissions = [("operate_schedule", "Can pause, resume, trigger and backfill schedules")]

    def __str__(self) -> str:
        return self.name


class PendingStartRecord(models.Model):
    """A debounced start not made yet (``start(..., key=..., debounce=...)``): one per workflow
    and business key, pushed back by each start in its window, taken by the worker that starts
    the instance. Written and read only by :mod:`~hephaestus_django.postgres.debounce`."""

    workflow = models.CharField(max_length=255, help_text="The workflow's dotted path.")
    key = models.CharField(max_length=MAX_KEY_LENGTH, help_text="The business key.")
    instance_id = models.UUIDField(help_text="The id the instance will have.")
    version = models.IntegerField(help_text="The workflow version it starts on.")
    context = models.JSONField(help_text="The last start's context (encoded).")
    metadata = models.JSONField(help_text="The last start's runtime metadata (encoded).")
    first_at = models.DateTimeField(db_default=Now(), help_text="The window's first start.")
    due_at = models.DateTimeField(help_text="When it starts unless pushed back.")
    deadline = models.DateTimeField(null=True, help_text="first_at + max_wait: never later.")
    pushes = models.IntegerField(db_default=1, help_text="Starts coalesced into it.")
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "hephaestus_pending_starts"
        verbose_name = "pending start"
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "key"], name="hephaestus_pending_starts_key"
            )
        ]
        indexes = [models.Index(fields=["due_at"], name="hephaestus_pending_starts_due")]

    def __str__(self) -> str:
        return f"{self.workflow} {self.key}"


class WorkflowPauseRecord(models.Model):
    """A whole workflow, or one version of it, held by an operator
    (``Workflow.pause_all``): its new instances are stored paused, and its instances that
    have not ended were paused with it.

    Written and read only by :mod:`~hephaestus_django.postgres.workflow_pauses` (one
    statement each); the admin lists it.
    """

    workflow = models.CharField(max_length=255, help_text="The workflow's dotted path.")
    version = models.IntegerField(default=0, help_text="The version held; 0 for every version.")
    reason = models.TextField(blank=True, help_text="Why it is held (empty: not said).")
    since = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "hephaestus_workflow_pauses"
        verbose_name = "paused workflow"
        constraints = [
            models.UniqueConstraint(
                fields=("workflow", "version"), name="hephaestus_workflow_pauses_held"
            )
        ]

    def __str__(self) -> str:
        if not self.version:
            return f"{self.workflow} (all versions)"
        return f"{self.workflow} version {self.version}"


class Slot(models.Model):
    """A holder of one of a concurrency limit's slots, or a waiter in line for one.

    Written and read only by :mod:`~hephaestus_django.postgres.slots` (every operation on one
    limit and key under a transaction-scoped advisory lock); see
    :mod:`~hephaestus_django.runtime.slots` for the rules. The limit's number is the code's,
    copied onto each row as ``capacity`` when the row is written: a changed limit takes effect
    at the next deploy, without a migration.
    """

    name = models.CharField(max_length=255, help_text="The limit: its name, or the step's path.")
    key = models.CharField(max_length=200, blank=True, help_text="The key (e.g. a tenant).")
    instance_id = models.UUIDField(help_text="The instance whose step holds or waits.")
    step = models.CharField(max_length=255, help_text="The step's dotted path.")
    state = models.CharField(max_length=16, help_text="'holding' or 'waiting'.")
    priority = models.IntegerField(default=0, help_text="Higher is admitted first.")
    capacity = models.IntegerField(help_text="The limit's number when the row was written.")
    enqueued_at = models.DateTimeField(help_text="When it joined the line (or took the slot).")
    acquired_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="A holder's lease: its slot is free after it."
    )
    per = models.DurationField(
        null=True,
        blank=True,
        help_text="A rate limit's window: the slot stays spent this long after its use.",
    )

    class Meta:
        db_table = "hephaestus_slots"
        verbose_name = "concurrency slot"
        constraints = [
            models.UniqueConstraint(
                fields=["name", "key", "instance_id", "step"], name="hephaestus_slots_holder"
            ),
        ]
        indexes = [
            models.Index(fields=["name", "key", "state"], name="hephaestus_slots_line"),
            models.Index(fields=["instance_id"], name="hephaestus_slots_instance"),
            # The dashboard's oldest waiter of each limit and key, read at the front of its line.
            models.Index(
                fields=["name", "key", "state", "enqueued_at"], name="hephaestus_slots_oldest"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.state} {self.name} {self.key!r}: {self.instance_id} {self.step}"


class OperationsDashboard(WorkflowInstance):
    """The admin's operations dashboard, as an entry of the admin index (no table of its own).

    A proxy with no permissions: whoever may view workflow instances sees it
    (:class:`~hephaestus_django.admin.dashboard.OperationsDashboardAdmin`).
    """

    class Meta:
        proxy = True
        default_permissions = ()
        verbose_name = "operations dashboard"
        verbose_name_plural = "operations dashboard"


class BulkOperation(models.Model):
    """One bulk operation (``hephaestus_bulk``, the admin's "all matching" actions): a verb
    applied in batches to the instances its filters select.

    Written and read only by :mod:`~hephaestus_django.postgres.bulk` (one statement each); see
    :mod:`~hephaestus_django.runtime.bulk`. ``after_id`` is the cursor (the last id of the last
    committed batch); ``done`` and ``refused`` count the outcomes up to it.
    """

    id = models.UUIDField(primary_key=True)
    operation = models.CharField(max_length=64, help_text="retry, cancel, rewind, ...")
    workflow = models.CharField(max_length=255, help_text="The workflow's dotted path.")
    filters = models.JSONField(default=dict, help_text="As list()'s, plus since/until.")
    options = models.JSONField(default=dict, help_text="The verb's options (to, reason...).")
    batch_size = models.IntegerField()
    status = models.CharField(max_length=16, help_text="pending, running or done.")
    after_id = models.UUIDField(null=True, blank=True, help_text="The last id operated.")
    done = models.BigIntegerField(default=0)
    refused = models.BigIntegerField(default=0)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "hephaestus_bulk_operations"
        verbose_name = "bulk operation"
        indexes = [
            models.Index(
                fields=["created_at", "id"],
                name="hephaestus_bulk_unfinished",
                condition=~models.Q(status="done"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.operation} {self.workflow} ({self.status})"


class BulkOutcome(models.Model):
    """What a bulk operation did to one instance: done, or refused with the reason.

    Written in the same transaction as the instance's write (a refusal on its own), so an
    instance with an outcome is never operated again by the same bulk operation.
    """

    bulk = models.ForeignKey(BulkOperation, on_delete=models.CASCADE, related_name="outcomes")
    instance_id = models.UUIDField()
    done = models.BooleanField()
    reason = models.TextField(null=True, blank=True)  # noqa: DJ001
    recorded_at = models.DateTimeField()

    class Meta:
        db_table = "hephaestus_bulk_outcomes"
        verbose_name = "bulk operation outcome"
        constraints = [
            models.UniqueConstraint(
                fields=["bulk", "instance_id"], name="hephaestus_bulk_outcome_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.instance_id}: {'done' if self.done else 'refused'}"
