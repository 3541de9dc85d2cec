"""Settings of the bulk fault test's worker processes: ``tests.dispatchers.worker_settings``
(the test's database, its workflows autodiscovered) with ``LocalRunner`` and the lease
``$LEASE`` (seconds), so a worker runs a bulk operation's batches and the steps they retry."""

from __future__ import annotations

import os

from tests.dispatchers.worker_settings import *  # noqa: F403

HEPHAESTUS = {
    "RUNNER": {
        "BACKEND": "hephaestus_django.runtime.LocalRunner",
        "OPTIONS": {"lease": float(os.environ.get("LEASE", "300"))},
    }
}
