"""Item 8: ``QueuedRunner`` + ``ProcrastinateDispatcher`` on real worker processes.

The measurements are in :mod:`bench.queued.run`; this package is also the Django app the worker
processes install (``bench.queued``), so that its :mod:`~bench.queued.workflows` (discovered by
hephaestus_django) and its bare procrastinate :mod:`~bench.queued.tasks` (discovered by
procrastinate) are registered there. :mod:`~bench.queued.settings` are the workers' settings.
"""
