"""An embedded PostgreSQL server a fault-test module owns, and one fresh database on it.

The fault tests restart it and terminate its backends, which they must never do to the
machine's shared server: each module gives it a data directory (and so a port) of its own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dj_database_url
import psycopg

from hephaestus_django.testing.embedded import ensure_server, stop_server

SETTINGS = {"synchronous_commit": "on"}
"""What the fault tests promise is checked with commits that wait for the disk."""


class OwnServer:
    """The server in ``data_dir`` and a database named ``<prefix>_<random>`` on it.

    ``clock`` is what :meth:`restart` reports the server's return with, so a test measures
    recovery on the clock it measures everything else with.
    """

    def __init__(
        self,
        data_dir: Path,
        prefix: str,
        *,
        clock: Callable[[], float],
        settings: Mapping[str, str] = SETTINGS,
    ) -> None:
        self.data_dir = data_dir
        self.server_settings = dict(settings)
        self.clock = clock
        self.database = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.url = self._ensure()
        self.settings = dict(dj_database_url.parse(self.url))

    def _ensure(self) -> str:
        return ensure_server(self.data_dir, database=self.database, settings=self.server_settings)

    def restart(self, mode: str) -> float:
        """Stop the server (``fast`` or ``immediate``) and start it again; when it was back."""
        stop_server(self.data_dir, mode=mode)
        time.sleep(0.5)  # down for a while: passes, fetches and steps fail, timers come due
        self._ensure()
        return self.clock()

    def terminate_backends(self) -> int:
        """``pg_terminate_backend`` every other session on the database; how many."""
        with psycopg.connect(self.url, autocommit=True) as connection:
            rows = connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                [self.database],
            ).fetchall()
        return len(rows)

    def rows(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Every stored instance: id -> (status, state)."""
        with psycopg.connect(self.url) as connection:
            found = connection.execute("SELECT id, status, state FROM workflow_instances")
            return {str(id_): (status, state) for id_, status, state in found.fetchall()}

    def drop(self) -> None:
        with psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
