# Workers that die are seen (issue 22): hephaestus_worker_passes also records the job engines'
# workers (procrastinate's, db_worker) as they receive QueuedRunner's jobs, in rows of role
# 'jobs' beside the sweep's ('sweep', every existing row). A process that both sweeps and runs
# jobs has one row of each, so the unique constraint takes the role. A handful of rows: no
# lock worth mentioning; reversed by deleting the 'jobs' rows first.

from django.db import migrations, models


def forget_job_rows(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("hephaestus_django", "WorkerPass").objects.using(
        schema_editor.connection.alias
    ).exclude(role="sweep").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("hephaestus_django", "0010_upgrade_permission"),
    ]

    operations = [
        migrations.AddField(
            model_name="workerpass",
            name="role",
            field=models.CharField(
                db_default="sweep",
                default="sweep",
                help_text="'sweep': a pass of hephaestus_worker; 'jobs': jobs a job engine's "
                "worker (procrastinate, db_worker) received for QueuedRunner.",
                max_length=16,
            ),
        ),
        migrations.RemoveConstraint(
            model_name="workerpass",
            name="hephaestus_worker_passes_worker",
        ),
        migrations.RunPython(migrations.RunPython.noop, forget_job_rows),
        migrations.AddConstraint(
            model_name="workerpass",
            constraint=models.UniqueConstraint(
                fields=("worker", "storage", "role"), name="hephaestus_worker_passes_role"
            ),
        ),
    ]
