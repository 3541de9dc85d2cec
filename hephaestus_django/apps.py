"""The Django app: checks, backends for the ``Workflow`` facade, workflow autodiscovery."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class HephaestusConfig(AppConfig):
    name = "hephaestus_django"
    label = "hephaestus_django"
    verbose_name = "Workflows"
    # The primary key type the migrations create (the worker passes table's id; the instances
    # table's is a UUID): pinned, so a project whose DEFAULT_AUTO_FIELD is another type, or
    # unset, gets no missing migration for this app from `makemigrations --check`.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hephaestus_django import checks  # noqa: F401  (registers the system checks)
        from hephaestus_django.conf import DjangoBackends
        from hephaestus_django.runtime.config import backends

        backends.install_provider(DjangoBackends())
        # HEPHAESTUS["MAX_STATE_BYTES"] and ["DEFAULT_RETRY"] live in the runtime and core,
        # which do not read Django settings.
        from hephaestus_django.conf import apply_policies

        apply_policies()
        # Lifecycle events become Django signals (hephaestus_django.signals), sent once the
        # write that recorded them has committed.
        from hephaestus_django import signals
        from hephaestus_django.runtime import events

        events.add_listener(signals.send, wants=signals.receiving)
        # OpenTelemetry spans and metrics, when opentelemetry-api is installed (a no-op
        # otherwise) and HEPHAESTUS["TELEMETRY"] is not False.
        from hephaestus_django import telemetry
        from hephaestus_django.conf import telemetry_enabled

        if telemetry_enabled() and not telemetry.installed():
            telemetry.install()
        # A job engine's worker that receives QueuedRunner's jobs records that it is alive
        # (hephaestus_worker_passes, role 'jobs'), for hephaestus_status and the dashboard.
        from hephaestus_django.postgres.worker_passes import JobRecorder
        from hephaestus_django.runtime import queued

        if not any(isinstance(o, JobRecorder) for o in queued._observers):
            queued.observe_jobs(JobRecorder())
        # A step with a timeout runs on a thread of its own (runtime.bounded); Django opens a
        # connection per thread, so the thread closes its connections as it ends, on time or
        # abandoned and late, rather than leaving them to the garbage collector.
        from django.db import connections

        from hephaestus_django.runtime.bounded import on_thread_exit

        on_thread_exit(connections.close_all)
        # Like admin.autodiscover(): every installed app's workflows.py is imported,
        # so the registry knows each workflow before a stored row names it.
        autodiscover_modules("workflows")
        # The tasks procrastinate's workers run, only where procrastinate's app is installed:
        # a project without procrastinate never imports it.
        if self.apps.is_installed("procrastinate.contrib.django"):
            from hephaestus_django.queues.procrastinate import register_tasks

            register_tasks()
