# Flow control, operations (issue 27): the dashboard shows each limit's oldest waiter, read at
# the front of an index on (name, key, state, enqueued_at) rather than through every waiter of
# a long line. Built CONCURRENTLY (so the migration is not atomic): hephaestus_slots stays
# writable meanwhile; reversed with DROP INDEX CONCURRENTLY.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("hephaestus_django", "0018_debounce"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="slot",
            index=models.Index(
                fields=["name", "key", "state", "enqueued_at"], name="hephaestus_slots_oldest"
            ),
        ),
    ]
