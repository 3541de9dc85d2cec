"""The processes the demo starts and stops itself: procrastinate workers, the sweep, the admin.

::

    with DemoProcesses(workers=2, log_dir=Path(".pgdata/logs")) as processes:
        processes.start_workers()          # `manage.py procrastinate worker`, N of them
        processes.start_sweep()            # `manage.py hephaestus_worker`
        ...                                # the demo's orders
        processes.serve("127.0.0.1:8000")  # `manage.py runserver`, until Ctrl-C

Each is a ``manage.py`` of this project in a process of its own, pointed at the demo's database
(``$DATABASE_URL``, or the URL of the embedded server this process started), with its output in
a log file of its own (the admin's stays on the terminal). Leaving the ``with`` block, however
it is left (the end of the demo, an error, Ctrl-C, SIGTERM), stops every one of them: SIGTERM,
a few seconds to finish the job at hand, then SIGKILL. Each child is in a session of its own, so
a Ctrl-C in the terminal reaches the demo alone, which then stops the children in order; on
Linux each child is also told by the kernel to stop if the demo dies without cleaning up
(``PR_SET_PDEATHSIG``, e.g. after a ``kill -9`` of the demo).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote

from django.conf import settings
from django.db import connection

MANAGE_PY = Path(__file__).resolve().parent.parent / "manage.py"
READY_TIMEOUT = 30.0
"""Seconds a worker has to register with procrastinate before the demo gives up."""
STOP_TIMEOUT = 10.0
"""Seconds a process has to stop after SIGTERM before it is killed."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ProcessFailed(RuntimeError):
    """A process of the demo could not start, or ended while the demo needed it."""


@dataclass(eq=False)  # hashed by identity: a key of jobs_by_worker()
class Child:
    """One process the demo started."""

    name: str
    command: list[str]
    process: subprocess.Popen[bytes]
    log: Path | None = None
    worker_id: int | None = None
    """The id procrastinate gave a worker in ``procrastinate_workers``."""
    log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def describe(self) -> str:
        """``worker 1 (pid 1234)``, and where its log is."""
        where = f"; its log: {self.log}" if self.log else ""
        return f"{self.name} (pid {self.pid}{where})"

    def exited(self) -> int | None:
        """Its exit status if it has ended, else None."""
        return self.process.poll()


class DemoProcesses:
    """Starts the demo's processes and stops every one of them when the ``with`` block ends."""

    def __init__(self, *, workers: int, log_dir: Path, stdout: Any = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers!r}")
        self.workers = workers
        self.log_dir = log_dir
        self.stdout = stdout
        self.children: list[Child] = []
        self.started = 0
        """How many processes this object has started, stopped ones included."""

    def __enter__(self) -> DemoProcesses:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- starting -----------------------------------------------------------------------------

    def start_workers(self) -> list[Child]:
        """Start ``self.workers`` procrastinate workers, one after the other, each ready (known
        to procrastinate) before the next starts, so each worker id names one process."""
        started = []
        for number in range(1, self.workers + 1):
            before = latest_worker_id()
            child = self._spawn(
                f"worker {number}",
                [
                    "procrastinate",
                    "worker",
                    f"--name=demo-worker-{number}",
                    # Timers' wake-up jobs are scheduled jobs, which a worker finds by polling
                    # (new jobs come by LISTEN/NOTIFY): poll often, the 2-second windows show.
                    "--fetch-job-polling-interval=0.5",
                    "--shutdown-graceful-timeout=5",
                ],
            )
            child.worker_id = self._wait_registered(child, before)
            started.append(child)
        return started

    def start_sweep(self) -> Child:
        """Start ``manage.py hephaestus_worker``: it re-enqueues the work of an instance whose
        worker died (its lease lapsed) and fires timers whose wake-up job was lost."""
        return self._spawn("sweep", ["hephaestus_worker", "--interval=1"])

    def serve(self, address: str) -> None:
        """Run ``manage.py runserver`` at ``address`` until it ends or Ctrl-C; meanwhile check
        that the workers and the sweep are still running."""
        server = self._spawn("admin", ["runserver", "--noreload", address], log=False)
        while True:
            try:
                server.process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                self.check_running()
            else:
                raise ProcessFailed(
                    f"the admin's server ended with status {server.exited()} (see above)"
                )

    # --- while running --------------------------------------------------------------------

    @property
    def worker_children(self) -> list[Child]:
        return [child for child in self.children if child.worker_id is not None]

    def check_running(self) -> None:
        """Raise :class:`ProcessFailed` if a process the demo started has ended."""
        for child in self.children:
            status = child.exited()
            if status is not None:
                raise ProcessFailed(
                    f"{child.describe()} ended with status {status}{tail(child.log)}"
                )

    def jobs_by_worker(self) -> dict[Child, int]:
        """How many procrastinate jobs each of the demo's workers ran (succeeded or failed)."""
        workers = {child.worker_id: child for child in self.worker_children}
        if not workers:
            return {}
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT worker_id, count(*) FROM procrastinate_jobs "
                "WHERE worker_id = ANY(%s) AND status IN ('succeeded', 'failed') "
                "GROUP BY worker_id",
                [list(workers)],
            )
            counts = dict(cursor.fetchall())
        return {child: counts.get(worker_id, 0) for worker_id, child in workers.items()}

    # --- stopping -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every process: SIGTERM to all, then SIGKILL to those still running after
        ``STOP_TIMEOUT`` seconds. Idempotent. A second Ctrl-C or SIGTERM meanwhile does not
        interrupt it."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
        try:
            self._stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self) -> None:
        running = [child for child in self.children if child.exited() is None]
        for child in running:
            with contextlib.suppress(ProcessLookupError):  # it has just ended
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in running:
            try:
                child.process.wait(timeout=max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                child.process.wait()
        for child in self.children:
            if child.log_file is not None:
                child.log_file.close()
                child.log_file = None
        self.children = [child for child in self.children if child.exited() is None]

    # --- internals ------------------------------------------------------------------------

    def _spawn(self, name: str, arguments: Sequence[str], *, log: bool = True) -> Child:
        command = [sys.executable, str(MANAGE_PY), *arguments]
        log_path = log_file = None
        if log:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name.replace(' ', '-')}.log"
            log_file = log_path.open("wb")
        process = subprocess.Popen(
            command,
            cwd=MANAGE_PY.parent,
            env=child_environment(),
            stdin=subprocess.DEVNULL,
            stdout=log_file,  # None: the admin's requests show on the terminal
            stderr=subprocess.STDOUT if log_file else None,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops the children
            preexec_fn=_die_with_parent(os.getpid()),
        )
        child = Child(name, command, process, log_path, log_file=log_file)
        self.children.append(child)
        self.started += 1
        return child

    def _wait_registered(self, child: Child, before: int) -> int:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            status = child.exited()
            if status is not None:
                raise ProcessFailed(
                    f"{child.describe()} ended with status {status} as it started{tail(child.log)}"
                )
            registered = latest_worker_id()
            if registered > before:
                return registered
            time.sleep(0.05)
        raise ProcessFailed(
            f"{child.describe()} did not register with procrastinate within "
            f"{READY_TIMEOUT:g} s{tail(child.log)}"
        )


def check_free(address: str) -> None:
    """Raise :class:`ProcessFailed` if ``HOST:PORT`` is taken (before anything is started)."""
    host, _, port = address.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(port)))
        except OSError as error:
            raise ProcessFailed(
                f"cannot serve the admin at {address}: {error.strerror}; "
                "choose another port (make demo DEMO_PORT=8001, or --serve 8001)"
            ) from None


def latest_worker_id() -> int:
    """The highest id in ``procrastinate_workers`` (0 if none): a new worker gets a higher one."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM procrastinate_workers")
        (found,) = cursor.fetchone()
    return int(found)


def child_environment() -> dict[str, str]:
    """This process's environment, with ``DATABASE_URL`` naming the database it uses: the
    embedded server it started (the children reuse it), or the ``$DATABASE_URL`` it was given."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if not env.get("DATABASE_URL", "").strip():
        env["DATABASE_URL"] = database_url(settings.DATABASES["default"])
    return env


def database_url(database: dict[str, Any]) -> str:
    """``postgresql://user:password@host:port/name`` of a Django database setting."""
    user = quote(database.get("USER") or "", safe="")
    password = database.get("PASSWORD") or ""
    credentials = f"{user}:{quote(password, safe='')}" if password else user
    host = database.get("HOST") or "localhost"
    port = database.get("PORT") or 5432
    return f"postgresql://{credentials}@{host}:{port}/{quote(database['NAME'], safe='')}"


def tail(log: Path | None, lines: int = 15) -> str:
    """The last lines of ``log``, indented, after a colon; nothing if there are none."""
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").rstrip().splitlines()[-lines:]
    if not text:
        return ""
    return ". The end of its log:\n" + "\n".join(f"    {line}" for line in text)


def _die_with_parent(parent: int) -> Any:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when the demo dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # the demo died before the prctl: follow it now
            os._exit(1)

    return preexec
