# Map steps (issue 26): each item of a map is a row of its own, so that recording an item writes
# that item, not the instance's state (which is rewritten whole on every write) nor the list. A
# new, empty table: no lock on workflow_instances beyond the foreign key's brief one. The foreign
# key cascades in the database, since the storage deletes instances with SQL of its own.

import django.db.models.deletion
from django.db import migrations, models

import hephaestus_django.serialization


class Migration(migrations.Migration):
    dependencies = [
        ("hephaestus_django", "0012_running_mark_column"),
    ]

    operations = [
        migrations.CreateModel(
            name="WorkflowMapItem",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("step", models.CharField(help_text="The map step's dotted path.", max_length=255)),
                ("item_index", models.IntegerField(help_text="The item's position in the list.")),
                ("done", models.BooleanField(default=False, help_text="Its result is recorded.")),
                (
                    "attempts",
                    models.IntegerField(default=0, help_text="How many of its attempts failed."),
                ),
                (
                    "result",
                    models.JSONField(
                        decoder=hephaestus_django.serialization.HephaestusJSONDecoder,
                        encoder=hephaestus_django.serialization.HephaestusJSONEncoder,
                        null=True,
                    ),
                ),
                (
                    "instance",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="map_items",
                        to="hephaestus_django.workflowinstance",
                    ),
                ),
            ],
            options={
                "verbose_name": "map item",
                "db_table": "workflow_map_items",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("instance", "step", "item_index"), name="workflow_map_items_item"
                    )
                ],
            },
        ),
        migrations.RunSQL(
            "ALTER TABLE workflow_map_items ADD CONSTRAINT workflow_map_items_instance "
            "FOREIGN KEY (instance_id) REFERENCES workflow_instances (id) ON DELETE CASCADE",
            reverse_sql="ALTER TABLE workflow_map_items DROP CONSTRAINT workflow_map_items_instance",
        ),
    ]
