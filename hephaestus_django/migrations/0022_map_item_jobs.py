# Map items as jobs (issue 26): an item job marks its item running, and an item that fails for
# good says so, so that whichever item job ends last settles the map's join from an aggregate
# of these rows. Two boolean columns with a constant database default: PostgreSQL adds them
# without rewriting the table, and SQL that does not name them (an older release's, during a
# rolling deploy) still inserts. The partial index of the items running or failed (a few per
# map) is built CONCURRENTLY, so the table stays writable meanwhile (hence not atomic).

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False
    dependencies = [
        ("hephaestus_django", "0021_pauses"),
    ]

    operations = [
        migrations.AddField(
            model_name="workflowmapitem",
            name="failed",
            field=models.BooleanField(
                db_default=False,
                default=False,
                help_text="It failed for good (its step fails).",
            ),
        ),
        migrations.AddField(
            model_name="workflowmapitem",
            name="running",
            field=models.BooleanField(
                db_default=False,
                default=False,
                help_text="Its item job runs it (QueuedRunner).",
            ),
        ),
        AddIndexConcurrently(
            model_name="workflowmapitem",
            index=models.Index(
                condition=models.Q(failed=True) | models.Q(running=True),
                fields=["instance", "step"],
                name="workflow_map_items_live",
            ),
        ),
    ]
