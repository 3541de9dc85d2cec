"""Pausing (issue 28): the workflows (or versions) held, a new, empty table (no lock on
workflow_instances; reversed by dropping it), and the permission of the admin's Pause and
Unpause operations (model options only, no SQL)."""

import django.db.models.functions.datetime
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("hephaestus_django", "0020_bulk_operations"),
    ]

    operations = [
        migrations.CreateModel(
            name="WorkflowPauseRecord",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "workflow",
                    models.CharField(help_text="The workflow's dotted path.", max_length=255),
                ),
                (
                    "version",
                    models.IntegerField(
                        default=0, help_text="The version held; 0 for every version."
                    ),
                ),
                (
                    "reason",
                    models.TextField(blank=True, help_text="Why it is held (empty: not said)."),
                ),
                (
                    "since",
                    models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
                ),
            ],
            options={
                "verbose_name": "paused workflow",
                "db_table": "hephaestus_workflow_pauses",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("workflow", "version"), name="hephaestus_workflow_pauses_held"
                    )
                ],
            },
        ),
        migrations.AlterModelOptions(
            name="workflowinstance",
            options={
                "permissions": [
                    ("resume_workflowinstance", "Can resume a waiting workflow instance"),
                    ("retry_workflowinstance", "Can retry a failed workflow instance"),
                    ("cancel_workflowinstance", "Can cancel a workflow instance"),
                    (
                        "upgrade_workflowinstance",
                        "Can upgrade a workflow instance to a newer version",
                    ),
                    (
                        "rewind_workflowinstance",
                        "Can rewind a workflow instance to an earlier step",
                    ),
                    (
                        "fork_workflowinstance",
                        "Can fork a workflow instance from one of its steps",
                    ),
                    ("pause_workflowinstance", "Can pause and unpause workflow instances"),
                ],
                "verbose_name": "workflow instance",
            },
        ),
    ]
