# Schedules (issue 26): hephaestus_schedules keeps what every worker shares of each schedule of
# settings.HEPHAESTUS["SCHEDULES"]: paused, the last tick started, when ticks count from. A new,
# small table (a row per schedule): no lock on the instances table. Reversed by dropping it.

import django.db.models.functions.datetime
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("hephaestus_django", "0014_map_items"),
    ]

    operations = [
        migrations.CreateModel(
            name="ScheduleRecord",
            fields=[
                (
                    "name",
                    models.CharField(
                        help_text="The schedule's name.",
                        max_length=255,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("paused", models.BooleanField(db_default=False, default=False)),
                (
                    "since",
                    models.DateTimeField(
                        db_default=django.db.models.functions.datetime.Now(),
                        help_text="Ticks after this count: when made, or last resumed.",
                    ),
                ),
                (
                    "last_tick",
                    models.DateTimeField(help_text="The latest tick started.", null=True),
                ),
                (
                    "next_due_at",
                    models.DateTimeField(help_text="The next tick, when last computed.", null=True),
                ),
                (
                    "updated_at",
                    models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
                ),
            ],
            options={
                "verbose_name": "schedule",
                "db_table": "hephaestus_schedules",
                "permissions": [
                    ("operate_schedule", "Can pause, resume, trigger and backfill schedules")
                ],
            },
        ),
    ]
