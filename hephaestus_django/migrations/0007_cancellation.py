# Cancellation (issue 16): the status "cancelled", the permission of the admin's Cancel
# operation, and cancelled instances in the prune index. Not atomic, so that a table of
# millions of rows stays writable: the status check is added NOT VALID and validated without
# blocking writes, and the prune index is rebuilt CONCURRENTLY.

from django.contrib.postgres.operations import (
    AddConstraintNotValid,
    AddIndexConcurrently,
    RemoveIndexConcurrently,
    ValidateConstraint,
)
from django.db import migrations, models

STATUSES = ["pending", "running", "waiting", "completed", "failed", "cancelled"]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("hephaestus_django", "0006_claims_and_quarantine"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="workflowinstance",
            options={
                "permissions": [
                    ("resume_workflowinstance", "Can resume a waiting workflow instance"),
                    ("retry_workflowinstance", "Can retry a failed workflow instance"),
                    ("cancel_workflowinstance", "Can cancel a workflow instance"),
                ],
                "verbose_name": "workflow instance",
            },
        ),
        migrations.AlterField(
            model_name="workflowinstance",
            name="status",
            field=models.CharField(
                choices=[(status, status) for status in STATUSES], max_length=16
            ),
        ),
        migrations.RemoveConstraint(
            model_name="workflowinstance",
            name="workflow_instances_status_valid",
        ),
        AddConstraintNotValid(
            model_name="workflowinstance",
            constraint=models.CheckConstraint(
                condition=models.Q(status__in=STATUSES),
                name="workflow_instances_status_valid",
            ),
        ),
        ValidateConstraint(
            model_name="workflowinstance",
            name="workflow_instances_status_valid",
        ),
        RemoveIndexConcurrently(
            model_name="workflowinstance",
            name="idx_workflow_instances_prune",
        ),
        AddIndexConcurrently(
            model_name="workflowinstance",
            index=models.Index(
                condition=models.Q(status__in=["completed", "failed", "cancelled"]),
                fields=["status", "updated_at", "id"],
                name="idx_workflow_instances_prune",
            ),
        ),
    ]
