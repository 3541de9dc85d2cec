# Debounced starts (issue 27): hephaestus_pending_starts keeps one pending start per workflow and
# business key until a worker starts its instance. A new, small table: no lock on the instances
# table. Reversed by dropping it.

import django.db.models.functions.datetime
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("hephaestus_django", "0017_operate_permissions"),
    ]

    operations = [
        migrations.CreateModel(
            name="PendingStartRecord",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "workflow",
                    models.CharField(help_text="The workflow's dotted path.", max_length=255),
                ),
                ("key", models.CharField(help_text="The business key.", max_length=255)),
                ("instance_id", models.UUIDField(help_text="The id the instance will have.")),
                ("version", models.IntegerField(help_text="The workflow version it starts on.")),
                ("context", models.JSONField(help_text="The last start's context (encoded).")),
                (
                    "metadata",
                    models.JSONField(help_text="The last start's runtime metadata (encoded)."),
                ),
                (
                    "first_at",
                    models.DateTimeField(
                        db_default=django.db.models.functions.datetime.Now(),
                        help_text="The window's first start.",
                    ),
                ),
                ("due_at", models.DateTimeField(help_text="When it starts unless pushed back.")),
                (
                    "deadline",
                    models.DateTimeField(help_text="first_at + max_wait: never later.", null=True),
                ),
                (
                    "pushes",
                    models.IntegerField(db_default=1, help_text="Starts coalesced into it."),
                ),
                (
                    "updated_at",
                    models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
                ),
            ],
            options={
                "verbose_name": "pending start",
                "db_table": "hephaestus_pending_starts",
                "indexes": [models.Index(fields=["due_at"], name="hephaestus_pending_starts_due")],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("workflow", "key"), name="hephaestus_pending_starts_key"
                    )
                ],
            },
        ),
    ]
