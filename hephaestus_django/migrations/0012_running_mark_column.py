# The running mark in a column of its own (issue 25): a queued step's job marks its step by
# writing the new `running` column (and the revision) alone, which no index covers, instead of
# rewriting `state` (and with it the GIN index and every other index). Nullable without a
# default: adding it changes the catalog only, the table is not rewritten. Rows written before
# keep their marks in state->'running', which the runtime reads while the column is empty.
#
# fillfactor 75 leaves a quarter of each page free, so the row's new version fits on its page and
# PostgreSQL writes it in place (a HOT update). A row keeps `state` inline up to about 2 KB
# (larger ones are compressed or moved to TOAST), so a page must keep room for one such version:
# measured with bench's ~1.8 KB rows (500 marks a round), 1500 of 1500 marks were HOT at 75
# (~300 bytes of WAL each), 86% at 80, 11-25% at 90 (2.7-6.8 KB of WAL each, the rewrite of
# every index). The price: new pages hold a quarter fewer rows. It applies to pages written from
# now on: the existing pages stay full until VACUUM FULL or pg_repack rewrites them (not done
# here, it would rewrite and lock the table). Reversed: the column dropped, the fill factor reset.

from django.db import migrations, models

FILLFACTOR = 75


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
