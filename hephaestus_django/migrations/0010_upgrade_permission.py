"""The permission of the admin's Upgrade operation (issue 17): model options only, no SQL."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("hephaestus_django", "0009_status_indexes"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="workflowinstance",
            options={
                "permissions": [
                    ("resume_workflowinstance", "Can resume a waiting workflow instance"),
                    ("retry_workflowinstance", "Can retry a failed workflow instance"),
                    ("cancel_workflowinstance", "Can cancel a workflow instance"),
                    (
                        "upgrade_workflowinstance",
                        "Can upgrade a workflow instance to a newer version",
                    ),
                ],
                "verbose_name": "workflow instance",
            },
        ),
    ]
