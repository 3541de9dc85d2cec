# Bulk operations (issue 28): two new tables, hephaestus_bulk_operations (one row per operation:
# its filters, options, cursor and counters) and hephaestus_bulk_outcomes (one row per instance
# operated: done or refused with the reason). New tables only: no lock on the instances table.
# Reversed by dropping them.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("hephaestus_django", "0019_slots_oldest_waiter"),
    ]

    operations = [
        migrations.CreateModel(
            name="BulkOperation",
            fields=[
                ("id", models.UUIDField(primary_key=True, serialize=False)),
                (
                    "operation",
                    models.CharField(help_text="retry, cancel, rewind, ...", max_length=64),
                ),
                (
                    "workflow",
                    models.CharField(help_text="The workflow's dotted path.", max_length=255),
                ),
                (
                    "filters",
                    models.JSONField(default=dict, help_text="As list()'s, plus since/until."),
                ),
                (
                    "options",
                    models.JSONField(default=dict, help_text="The verb's options (to, reason...)."),
                ),
                ("batch_size", models.IntegerField()),
                ("status", models.CharField(help_text="pending, running or done.", max_length=16)),
                (
                    "after_id",
                    models.UUIDField(blank=True, help_text="The last id operated.", null=True),
                ),
                ("done", models.BigIntegerField(default=0)),
                ("refused", models.BigIntegerField(default=0)),
                ("created_at", models.DateTimeField()),
                ("updated_at", models.DateTimeField()),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("lease_owner", models.CharField(blank=True, max_length=255, null=True)),
                ("lease_expires_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "verbose_name": "bulk operation",
                "db_table": "hephaestus_bulk_operations",
                "indexes": [
                    models.Index(
                        condition=models.Q(("status", "done"), _negated=True),
                        fields=["created_at", "id"],
                        name="hephaestus_bulk_unfinished",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="BulkOutcome",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("instance_id", models.UUIDField()),
                ("done", models.BooleanField()),
                ("reason", models.TextField(blank=True, null=True)),
                ("recorded_at", models.DateTimeField()),
                (
                    "bulk",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="outcomes",
                        to="hephaestus_django.bulkoperation",
                    ),
                ),
            ],
            options={
                "verbose_name": "bulk operation outcome",
                "db_table": "hephaestus_bulk_outcomes",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("bulk", "instance_id"), name="hephaestus_bulk_outcome_once"
                    )
                ],
            },
        ),
    ]
