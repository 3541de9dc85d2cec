"""The permissions of the admin's Rewind and Fork operations (issue 28): model options only, no
SQL."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("hephaestus_django", "0016_flow_control"),
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
                    (
                        "rewind_workflowinstance",
                        "Can rewind a workflow instance to an earlier step",
                    ),
                    (
                        "fork_workflowinstance",
                        "Can fork a workflow instance from one of its steps",
                    ),
                ],
                "verbose_name": "workflow instance",
            },
        ),
    ]
