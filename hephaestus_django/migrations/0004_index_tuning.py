# Performance (issue 7): a 256 kB GIN pending list on `state`, and an index for the newest-first
# list. The GIN change is a storage parameter, set with ALTER INDEX: the index is not rebuilt.

from django.contrib.postgres.indexes import GinIndex
from django.db import migrations, models

GIN = "idx_workflow_instances_state"


class Migration(migrations.Migration):
    dependencies = [
        ("hephaestus_django", "0003_durable_execution"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f"ALTER INDEX {GIN} SET (gin_pending_list_limit = 256)",
                    reverse_sql=f"ALTER INDEX {GIN} RESET (gin_pending_list_limit)",
                ),
            ],
            state_operations=[
                migrations.RemoveIndex(model_name="workflowinstance", name=GIN),
                migrations.AddIndex(
                    model_name="workflowinstance",
                    index=GinIndex(
                        fields=["state"],
                        gin_pending_list_limit=256,
                        name=GIN,
                        opclasses=["jsonb_path_ops"],
                    ),
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="workflowinstance",
            index=models.Index(fields=["inserted_at", "id"], name="idx_workflow_instances_ins"),
        ),
    ]
