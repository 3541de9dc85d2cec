"""Settings of ``test_queued_restarts``' processes: ``tests.dispatchers.worker_settings`` (the
test's database, ``QueuedRunner`` on procrastinate, the lease ``$LEASE``), with procrastinate's
worker and psycopg's pool logging at INFO, so that the logs show what a restart did to them."""

from __future__ import annotations

from tests.dispatchers.worker_settings import *  # noqa: F403
from tests.dispatchers.worker_settings import LOGGING

LOGGING = {
    **LOGGING,
    "loggers": {
        **LOGGING["loggers"],
        "procrastinate": {"handlers": ["stderr"], "level": "INFO"},
        "psycopg.pool": {"handlers": ["stderr"], "level": "INFO"},
    },
}
