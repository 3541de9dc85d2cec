# Flow control (issue 27): the concurrency slots of the steps' limits, one row per holder or
# waiter. A new, empty table: no lock on workflow_instances; reversed by dropping it.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("hephaestus_django", "0015_schedules"),
    ]

    operations = [
        migrations.CreateModel(
            name="Slot",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "name",
                    models.CharField(
                        help_text="The limit: its name, or the step's path.", max_length=255
                    ),
                ),
                (
                    "key",
                    models.CharField(
                        blank=True, help_text="The key (e.g. a tenant).", max_length=200
                    ),
                ),
                (
                    "instance_id",
                    models.UUIDField(help_text="The instance whose step holds or waits."),
                ),
                ("step", models.CharField(help_text="The step's dotted path.", max_length=255)),
                ("state", models.CharField(help_text="'holding' or 'waiting'.", max_length=16)),
                ("priority", models.IntegerField(default=0, help_text="Higher is admitted first.")),
                (
                    "capacity",
                    models.IntegerField(help_text="The limit's number when the row was written."),
                ),
                (
                    "enqueued_at",
                    models.DateTimeField(help_text="When it joined the line (or took the slot)."),
                ),
                ("acquired_at", models.DateTimeField(blank=True, null=True)),
                (
                    "expires_at",
                    models.DateTimeField(
                        blank=True,
                        help_text="A holder's lease: its slot is free after it.",
                        null=True,
                    ),
                ),
            ],
            options={
                "verbose_name": "concurrency slot",
                "db_table": "hephaestus_slots",
                "indexes": [
                    models.Index(fields=["name", "key", "state"], name="hephaestus_slots_line"),
                    models.Index(fields=["instance_id"], name="hephaestus_slots_instance"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("name", "key", "instance_id", "step"),
                        name="hephaestus_slots_holder",
                    )
                ],
            },
        ),
    ]
