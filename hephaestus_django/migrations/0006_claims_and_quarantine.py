# Issue 14: a row the worker cannot decode is quarantined, with the reason kept here; the claim
# skips it until a write clears it. A nullable column without a default: adding it rewrites
# nothing, and removing it (the reverse) loses only the reasons.
#
# The worker's claim needs no new index: it reads due timers from idx_workflow_instances_due and
# stalled runs from idx_workflow_instances_stall, each as its own candidate set.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("hephaestus_django", "0005_prune_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="workflowinstance",
            name="quarantine_reason",
            field=models.TextField(
                blank=True,
                help_text=(
                    "Why a worker could not decode this instance: it is not claimed again until "
                    "the next write clears this."
                ),
                null=True,
            ),
        ),
    ]
