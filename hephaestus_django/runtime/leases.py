"""Leases: which runner executes an instance's steps, and for how long.

One runner at a time executes an instance's steps. It holds a *lease* (an
owner token and an expiry, stored with the instance) from the write that made
steps runnable until the write that leaves nothing runnable. Another process
that delivers an event meanwhile records it and leaves the steps to the owner.
If the owner dies, its lease lapses and a worker takes the instance over and
runs its active steps again: steps are executed at least once.

A step may run longer than a lease: while steps execute, :class:`Heartbeat`
renews the leases of this process every third of the lease duration. Expiries
are the storage's time (``storage.now()``, the database's for a SQL backend):
a runner whose own clock is wrong neither writes leases that lapse early nor
takes live ones for lapsed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from uuid import UUID

from hephaestus_django.core import engine
from hephaestus_django.core.errors import InstanceNotFound
from hephaestus_django.core.graph import StepClass
from hephaestus_django.core.instance import Instance, evolve
from hephaestus_django.core.pause import PAUSABLE, is_paused
from hephaestus_django.runtime.bounded import run_exit_hooks
from hephaestus_django.runtime.contract import Storage
from hephaestus_django.runtime.logs import about
from hephaestus_django.runtime.slots import is_parked

logger = logging.getLogger("hephaestus_django.runner")

QUEUE_OWNER_PREFIX = "queued:"
"""How the owner of a queue lease starts (``QueuedRunner``): the instance's work is out as jobs,
renewed by whichever of them runs, rather than held by one runner."""


PAUSE_OWNER = "paused:"
"""The owner of a paused instance's lease (:mod:`~hephaestus_django.core.pause`): no runner's.

Held until the instance is unpaused (:data:`PAUSE_LEASE_UNTIL`), it keeps the worker's sweep
off the instance (a live lease is never claimed, whatever is due) and every queued job (a step
under a live lease that is not a queue lease runs elsewhere, :func:`runs_elsewhere`), without
a statement of its own: the claim and the job's mark already read the lease."""

PAUSE_LEASE_UNTIL = datetime(9000, 1, 1, tzinfo=UTC)
"""When a pause lease expires: never, in practice (unpausing takes it back)."""


def is_pause_lease(owner: str | None) -> bool:
    """Whether ``owner`` is the pause's (:data:`PAUSE_OWNER`)."""
    return owner == PAUSE_OWNER


def held_by_pause(instance: Instance) -> Instance:
    """A paused instance with the pause lease while it has not ended; an ended one (a step
    that was running when it was paused failed it) keeps no lease."""
    if instance.status not in PAUSABLE:
        if instance.lease_owner is None:
            return instance
        return evolve(instance, lease_owner=None, lease_expires_at=None)
    if is_pause_lease(instance.lease_owner):
        return instance
    return evolve(instance, lease_owner=PAUSE_OWNER, lease_expires_at=PAUSE_LEASE_UNTIL)


def new_owner() -> str:
    """A token naming one drive of one instance: host, process and a random part.

    Every drive gets its own token, so two threads of one process never mistake
    each other's lease for their own. The random part is 48 bits from ``os.urandom``, as the
    first 12 hex digits of a ``uuid4`` were, without building the UUID (every start and resume
    makes one).
    """
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(6).hex()}"


def with_lease(instance: Instance, owner: str, now: datetime, duration: timedelta) -> Instance:
    """The instance leased to ``owner`` while it has runnable steps, released otherwise.

    A live lease held by another runner is left alone while there are steps to run: that
    runner executes them. A parked lease (the instance waits for a concurrency slot) is no
    runner's: whoever moves the instance on takes it; so is a pause lease, which a paused
    instance holds until it is unpaused (:func:`held_by_pause`). With none (the instance was
    cancelled, or failed, while that runner executed steps whose results will now be
    refused), it is released whoever holds it, so a finished instance never keeps a lease.
    """
    if is_paused(instance):
        return held_by_pause(instance)
    if not engine.runnable_steps(instance):
        if instance.lease_owner is None:
            return instance
        return evolve(instance, lease_owner=None, lease_expires_at=None)
    if (
        instance.leased_to_other(owner, now)
        and not is_parked(instance.lease_owner)
        and not is_pause_lease(instance.lease_owner)
    ):
        return instance
    return evolve(instance, lease_owner=owner, lease_expires_at=now + duration)


def runs_elsewhere(instance: Instance, step: StepClass, now: datetime) -> bool:
    """Whether ``step`` of ``instance`` is run by someone else at ``now``, so a queued job must
    not start it (``StepMarking.mark_running`` refuses it).

    True while the instance's lease is live and either

    - it is a queue lease and the step has a running mark: the job that marked the step renews
      that lease (every third of it) while the step runs, so the mark is *live*; once that job
      dies the lease lapses within one lease, the mark is dead, and the sweep clears it as it
      takes the instance over; or
    - it is not a queue lease: another runner holds the instance (the sweep between its claim
      and its take-over's write, a ``LocalRunner`` driving it), and runs or re-enqueues its
      steps itself.
    """
    owner = instance.lease_owner
    expires = instance.lease_expires_at
    if owner is None or expires is None or expires <= now:
        return False
    return not owner.startswith(QUEUE_OWNER_PREFIX) or step in instance.running


_LeaseKey = tuple[int, UUID, str]
"""A held lease: ``id()`` of the storage, the instance, the owner."""


class Heartbeat:
    """Renews the leases of the steps executing in this process, from one daemon thread.

    The thread starts with the first lease held and ends after a beat finds none left, closing
    its database connections on the way out (:func:`~hephaestus_django.runtime.bounded.
    on_thread_exit`); the next lease held starts a new one. So a busy process keeps one thread,
    and an idle one, or a runner dropped without ``close()``, leaves no thread or connection
    behind for longer than a beat.
    """

    def __init__(self, duration: timedelta) -> None:
        self.duration = duration
        self._leases: dict[_LeaseKey, Storage] = {}
        self._holders: dict[_LeaseKey, int] = {}
        """How many blocks hold each lease: ``QueuedRunner`` may run two steps of one instance
        in one process under one owner, and the first to end must not stop the renewals."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def held(self, storage: Storage, instance_id: UUID, owner: str) -> AbstractContextManager[None]:
        """Keep ``owner``'s lease on the instance alive for the duration of the block."""
        return _Held(self, (id(storage), instance_id, owner), storage)

    def _hold(self, key: _LeaseKey, storage: Storage) -> None:
        with self._lock:
            self._leases[key] = storage
            self._holders[key] = self._holders.get(key, 0) + 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._beat, name="hephaestus-heartbeat", daemon=True
                )
                self._thread.start()

    def _release(self, key: _LeaseKey) -> None:
        with self._lock:
            holders = self._holders.pop(key, 1) - 1
            if holders > 0:  # another step of the instance still runs here under this lease
                self._holders[key] = holders
            else:
                self._leases.pop(key, None)

    def stop(self) -> None:
        """End the renewing thread (a new one starts if a lease is held again)."""
        thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join()
        self._wake.clear()
        self._thread = None

    def _beat(self) -> None:
        interval = self.duration.total_seconds() / 3
        try:
            while not self._wake.wait(interval):
                with self._lock:
                    leases = list(self._leases.items())
                    if not leases:  # idle: the next lease held starts a new thread
                        if self._thread is threading.current_thread():
                            self._thread = None
                        return
                for (_storage, instance_id, owner), storage in leases:
                    self._renew(storage, instance_id, owner)
        finally:
            run_exit_hooks()

    def _renew(self, storage: Storage, instance_id: UUID, owner: str) -> None:
        key = (id(storage), instance_id, owner)
        try:
            if storage.renew(instance_id, owner, self.duration):
                return
            with self._lock:
                if key not in self._leases:
                    # The wave ended while this beat ran: its write released the lease (the
                    # runner lets go of a lease before it writes), so nobody took it over.
                    return
            self._report_lost(storage, instance_id, owner)
        except Exception:  # the next beat tries again; the step itself carries on
            logger.exception(
                "could not renew the lease on instance %s",
                instance_id,
                extra=about(instance_id=instance_id),
            )

    def _report_lost(self, storage: Storage, instance_id: UUID, owner: str) -> None:
        """Say why a lease still held here could not be renewed: only a real takeover warns."""
        try:
            holder = storage.get(instance_id).lease_owner
        except InstanceNotFound:
            logger.info(
                "instance %s was deleted while its steps ran here",
                instance_id,
                extra=about(instance_id=instance_id),
            )
            return
        if holder is not None and holder != owner:
            logger.warning(
                "lost the lease on instance %s: another runner (%s) took it over; its steps "
                "may run again there",
                instance_id,
                holder,
                extra=about(instance_id=instance_id),
            )
        else:
            logger.info(
                "the lease on instance %s was released by another write while its steps ran "
                "here; the next wave's write decides who runs what follows",
                instance_id,
                extra=about(instance_id=instance_id),
            )


class _Held:
    """What :meth:`Heartbeat.held` returns: holds the lease in ``with``, releases it after.

    A plain class rather than a ``@contextmanager`` generator, as the runner
    enters one for every wave it executes.
    """

    __slots__ = ("_heartbeat", "_key", "_storage")

    def __init__(self, heartbeat: Heartbeat, key: _LeaseKey, storage: Storage) -> None:
        self._heartbeat = heartbeat
        self._key = key
        self._storage = storage

    def __enter__(self) -> None:
        self._heartbeat._hold(self._key, self._storage)

    def __exit__(self, *exc_info: object) -> None:
        self._heartbeat._release(self._key)
