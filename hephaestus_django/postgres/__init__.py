"""Every statement the app writes by hand, and what keeps its connection alive.

- :mod:`~hephaestus_django.postgres.sql`: the statements, each named and described;
- :mod:`~hephaestus_django.postgres.storage`: ``DjangoStorage``, the storage contract on a
  Django database alias;
- :mod:`~hephaestus_django.postgres.snapshot`: the status snapshot (``hephaestus_status``, the
  admin's dashboard);
- :mod:`~hephaestus_django.postgres.retention`: ``hephaestus_prune``'s batched deletes;
- :mod:`~hephaestus_django.postgres.worker_passes`: what the workers record of their passes;
- :mod:`~hephaestus_django.postgres.step_workers`: what the job engines' own tables say of
  their queues and workers;
- :mod:`~hephaestus_django.postgres.reconnect`: going on after a dropped connection;
- :mod:`~hephaestus_django.postgres.cursors`: reading rows through Django's cursor, fast.

Nothing here imports the admin; the admin, the commands and the queues import from here.
"""
