# Housekeeping at scale (issue 14): an index for hephaestus_prune's batches, on the finished
# statuses only. Built CONCURRENTLY, so a table of millions of rows stays writable meanwhile
# (which is why the migration is not atomic); reversed with DROP INDEX CONCURRENTLY.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("hephaestus_django", "0004_index_tuning"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="workflowinstance",
            index=models.Index(
                condition=models.Q(status__in=["completed", "failed"]),
                fields=["status", "updated_at", "id"],
                name="idx_workflow_instances_prune",
            ),
        ),
    ]
