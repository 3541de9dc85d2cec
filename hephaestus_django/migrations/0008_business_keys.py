# Business keys (issue 17): the caller's own name for an instance, and the claim that makes it
# unique in its workflow's key scope. Not atomic, so that a table of millions of rows stays
# writable: the nullable columns are added without rewriting the table, and both indexes are
# built CONCURRENTLY (the unique one by hand: Django builds a conditional UniqueConstraint as a
# unique partial index, which is what the SQL below creates, under the constraint's name).

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("hephaestus_django", "0007_cancellation"),
    ]

    operations = [
        migrations.AddField(
            model_name="workflowinstance",
            name="business_key",
            field=models.CharField(
                blank=True,
                help_text="The caller's own name for the instance (start(..., key=...)).",
                max_length=255,
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="workflowinstance",
            name="key_claim",
            field=models.TextField(
                blank=True,
                editable=False,
                help_text=(
                    "The scope, workflow and key while the instance holds its business key: "
                    "unique, so two instances cannot hold one key at once."
                ),
                null=True,
            ),
        ),
        AddIndexConcurrently(
            model_name="workflowinstance",
            index=models.Index(
                condition=models.Q(business_key__isnull=False),
                fields=["business_key"],
                name="idx_workflow_instances_key",
            ),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    "CREATE UNIQUE INDEX CONCURRENTLY workflow_instances_key_claim "
                    "ON workflow_instances (key_claim) WHERE key_claim IS NOT NULL",
                    reverse_sql="DROP INDEX CONCURRENTLY IF EXISTS workflow_instances_key_claim",
                ),
            ],
            state_operations=[
                migrations.AddConstraint(
                    model_name="workflowinstance",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(key_claim__isnull=False),
                        fields=("key_claim",),
                        name="workflow_instances_key_claim",
                    ),
                ),
            ],
        ),
    ]
