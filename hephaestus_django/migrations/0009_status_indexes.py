# Operations (issue 18): what hephaestus_status and the admin's dashboard read.
#
# - hephaestus_worker_passes: one small row per worker process and storage, the worker's latest
#   recorded pass, so that "does any worker run?" has an answer.
# - OperationsDashboard: a proxy with no table and no permissions, the admin dashboard's entry
#   in the admin index.
# - idx_workflow_instances_quar: quarantined rows, counted without reading the table. Built
#   CONCURRENTLY, so a table of millions of rows stays writable meanwhile (which is why the
#   migration is not atomic); reversed with DROP INDEX CONCURRENTLY.
# - extended statistics on (workflow, status): PostgreSQL's ANALYZE then samples which
#   workflow x status pairs are common, and the dashboard estimates the counts of a status too
#   large to count from them instead of scanning. CREATE STATISTICS blocks no reads or writes;
#   the ANALYZE after it samples the table (30,000 rows by default), so the estimates exist
#   before autovacuum's next visit.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.models.functions import Now

STATISTICS = "workflow_instances_wf_status"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("hephaestus_django", "0008_business_keys"),
    ]

    operations = [
        migrations.CreateModel(
            name="WorkerPass",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "worker",
                    models.CharField(help_text="host:pid of the worker process.", max_length=255),
                ),
                (
                    "storage",
                    models.CharField(
                        help_text="The storage alias the pass served.", max_length=255
                    ),
                ),
                ("host", models.CharField(max_length=255)),
                ("pid", models.IntegerField()),
                (
                    "started_at",
                    models.DateTimeField(db_default=Now(), help_text="The worker's first pass."),
                ),
                (
                    "last_pass_at",
                    models.DateTimeField(db_default=Now(), help_text="Its latest recorded pass."),
                ),
                ("passes", models.BigIntegerField(default=0, help_text="Passes since it started.")),
                (
                    "handled",
                    models.BigIntegerField(
                        default=0, help_text="Instances it moved on since it started."
                    ),
                ),
            ],
            options={
                "verbose_name": "worker pass",
                "db_table": "hephaestus_worker_passes",
                "indexes": [
                    models.Index(fields=["last_pass_at"], name="hephaestus_worker_passes_at")
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("worker", "storage"), name="hephaestus_worker_passes_worker"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="OperationsDashboard",
            fields=[],
            options={
                "verbose_name": "operations dashboard",
                "verbose_name_plural": "operations dashboard",
                "proxy": True,
                "default_permissions": (),
                "indexes": [],
                "constraints": [],
            },
            bases=("hephaestus_django.workflowinstance",),
        ),
        AddIndexConcurrently(
            model_name="workflowinstance",
            index=models.Index(
                condition=models.Q(quarantine_reason__isnull=False),
                fields=["updated_at"],
                name="idx_workflow_instances_quar",
            ),
        ),
        migrations.RunSQL(
            f"CREATE STATISTICS IF NOT EXISTS {STATISTICS} (mcv) ON workflow, status "
            "FROM workflow_instances",
            f"DROP STATISTICS IF EXISTS {STATISTICS}",
        ),
        migrations.RunSQL("ANALYZE workflow_instances", migrations.RunSQL.noop),
    ]
