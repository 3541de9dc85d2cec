# The running mark in a column of its own (issue 25): a queued step's job marks its step by
# writing the new `running` column (and the revision) alone, which no index covers, instead of
# rewriting `state` (and with it the GIN index and every other index). Nullable without a
# default: adding it changes the catalog only, the table is not rewritten. Rows written before
# keep their marks in state->'running', which the runtime reads while the column is empty.
#
# fillfactor 90 leaves a tenth of each page free, so the row's new version fits on its page and
# PostgreSQL writes it in place (a HOT update). It applies to pages written from now on: the
# existing pages stay full until VACUUM FULL or pg_repack rewrites them (not done here, it
# would rewrite and lock the table). Reversed: the column dropped, the fill factor reset.

from django.db import migrations, models

FILLFACTOR = 90


class Migration(migrations.Migration):
    dependencies = [
        ("hephaestus_django", "0011_step_workers_seen"),
    ]

    operations = [
        migrations.AddField(
            model_name="workflowinstance",
            name="running",
            field=models.JSONField(
                blank=True,
                editable=False,
                help_text="Where and since when QueuedRunner's jobs run the instance's steps: "
                "step path -> {'on': host:pid, 'since': ISO 8601}; empty while no job runs one.",
                null=True,
            ),
        ),
        migrations.RunSQL(
            f"ALTER TABLE workflow_instances SET (fillfactor = {FILLFACTOR})",
            "ALTER TABLE workflow_instances RESET (fillfactor)",
        ),
    ]
