# Flow control (issue 27): each slot row keeps the window of the rate limit it was taken under
# (``per``; NULL for a concurrency limit), so a cancelled, failed or deleted instance's holding
# slot of a rate limit is spent for its window (FREE) rather than deleted. A nullable column
# without a default: PostgreSQL adds it to the catalogue only (no table rewrite, a brief lock).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("hephaestus_django", "0022_map_item_jobs"),
    ]

    operations = [
        migrations.AddField(
            model_name="slot",
            name="per",
            field=models.DurationField(
                blank=True,
                null=True,
                help_text="A rate limit's window: the slot stays spent this long after its use.",
            ),
        ),
    ]
