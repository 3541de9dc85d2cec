"""Concurrency slots: who holds one of a limit's slots, who waits for one, and in what order.

A step declaring :class:`~hephaestus_django.Concurrency` executes only while it *holds* a
slot of its limit under its key. The storage keeps the slots (:class:`SlotKeeping` in
:mod:`~hephaestus_django.runtime.contract`); every operation on one limit and key is
serialized (a transaction-scoped advisory lock in PostgreSQL, the storage's lock in memory):

- ``admit`` takes a slot when fewer than ``limit`` live holders and the waiters ahead of the
  request (higher priority, or the same and older) leave room; otherwise the request waits in
  line, durably, keeping its place on a later ``admit``.
- ``release`` gives up the slots an execution held, and, in the same transaction, admits the
  next waiters in line (priority, then age): their slots are taken for them, and their
  instances are *woken* (a parked lease made due, so a worker's next pass runs them). No wake
  is lost, and only as many waiters wake as there are free slots.
- A holder's slot lasts a lease, renewed with the instance's lease while its step runs: the
  slot of a worker killed with ``kill -9`` comes back when that lease lapses, and the worker's
  sweep (``admit_waiting``) then admits the next waiter.

A rate limit's slot (:class:`~hephaestus_django.RateLimit`, a request with ``per``) is taken
and held the same way, but ``release`` does not free it: it becomes *spent*, detached from its
instance (:data:`SPENT`), and counts among the holders for ``per`` more. So at most ``limit``
executions fall in any window of ``per``, whichever moment of them is measured; the sweep
admits the next waiters as spent slots lapse.

A workflow's concurrency limit (its running instances) is kept the same way too: the slot,
named with :data:`~hephaestus_django.core.flow.RUNNING_PREFIX`, is taken by the first execution
of its start step for :data:`UNTIL_THE_END` rather than a lease, and given back by the write that
ends the instance (:func:`~hephaestus_django.runtime.admission.release_on_end`, in its
transaction); the sweep forgets it should an instance end without that.

``LocalRunner`` *parks* an instance whose only runnable steps wait for slots: its lease goes
to a ``parked:`` owner for :data:`PARKED_LEASES` leases (a backstop, should a wake be lost),
and the worker's claim takes it when a release wakes it.

:class:`SlotTable` is the in-memory storage's table (the same rules, under its lock).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

from hephaestus_django.core.flow import RUNNING_PREFIX, SlotRequest

logger = logging.getLogger("hephaestus_django.runner")

PARKED_PREFIX = "parked:"
"""How the owner of a parked instance's lease starts: nobody runs it; a release wakes it."""

SPENT = UUID(int=0)
"""The instance a rate limit's spent slot is kept under (none: it only counts until it
lapses, whatever becomes of the instance that spent it)."""

UNTIL_THE_END = timedelta(days=36_500)
"""How long a running instance's slot of its workflow's concurrency limit lasts: until the
instance ends (which frees it), not a lease (between its steps nobody renews it)."""

PARKED_LEASES = 12
"""How many leases a parked instance's lease lasts: only a backstop, since the release or the
sweep that admits its waiting step wakes it (in the admission's transaction). A parked lease of
one lease made every instance of a long line (a backlog under a rate limit) lapse each lease
and be claimed, asked again and parked again by the workers, all at once: a storm of claims
and admissions that held up the sweep's admissions and the wakes behind it."""

HOLDING = "holding"
WAITING = "waiting"


def slot_lease(name: str, lease: timedelta) -> timedelta:
    """How long a slot of limit ``name`` is taken for: a lease, renewed while its step runs;
    a running instance's until it ends."""
    return UNTIL_THE_END if name.startswith(RUNNING_PREFIX) else lease


def is_parked(owner: str | None) -> bool:
    """Whether a lease owner is the mark of an instance parked for a slot."""
    return owner is not None and owner.startswith(PARKED_PREFIX)


@dataclass(frozen=True, slots=True)
class Slot:
    """One row of the slots table: a holder of one of a limit's slots, or a waiter for one."""

    name: str
    key: str
    instance_id: UUID
    step: str
    state: str
    priority: int
    capacity: int
    enqueued_at: datetime
    order: int
    acquired_at: datetime | None = None
    expires_at: datetime | None = None
    per: timedelta | None = None
    """A rate limit's window (None for a concurrency limit): a holder is spent for it."""

    def live(self, now: datetime) -> bool:
        """A holder whose lease has not lapsed."""
        return self.state == HOLDING and self.expires_at is not None and self.expires_at > now

    def line_order(self) -> tuple[int, datetime, int]:
        """Its place in line: higher priority first, then first come, first served."""
        return (-self.priority, self.enqueued_at, self.order)


@dataclass(frozen=True, slots=True)
class LimitUse:
    """One limit under one key, as ``hephaestus_status`` reports it."""

    name: str
    key: str
    holding: int
    waiting: int
    limit: int


@dataclass(frozen=True, slots=True)
class LimitLine:
    """One limit under one key, as the admin's dashboard shows it: its holders and its line
    counted up to ``cap`` (``holding`` or ``waiting`` equal to ``cap`` means "at least"), and
    when its oldest waiter joined the line (None: nobody waits)."""

    name: str
    key: str
    holding: int
    waiting: int
    limit: int
    oldest_waiting_at: datetime | None
    now: datetime
    cap: int

    @property
    def oldest_wait(self) -> timedelta | None:
        """How long the oldest waiter has waited."""
        if self.oldest_waiting_at is None:
            return None
        return max(self.now - self.oldest_waiting_at, timedelta(0))


@dataclass(frozen=True, slots=True)
class Place:
    """Where a waiting step of an instance stands: ``position`` in line (1: next)."""

    step: str
    name: str
    key: str
    position: int


class SlotTable:
    """The slots of every limit, for :class:`~hephaestus_django.runtime.memory.InMemoryStorage`.

    Not thread-safe by itself: its storage calls it under its own lock. ``running`` says
    whether an instance can still use a slot (it exists and runs): a waiter that cannot is
    passed over and forgotten.
    """

    def __init__(self) -> None:
        self._slots: dict[tuple[str, str, UUID, str], Slot] = {}
        self._order = itertools.count()

    def admit(
        self,
        instance_id: UUID,
        step: str,
        request: SlotRequest,
        *,
        priority: int,
        lease: timedelta,
        now: datetime,
        running: Callable[[UUID], bool],
    ) -> bool:
        ident = (request.name, request.key, instance_id, step)
        mine = self._slots.get(ident)
        if mine is not None and mine.live(now):
            self._slots[ident] = replace(
                mine, expires_at=now + lease, capacity=request.limit, per=request.per
            )
            return True
        group = self._group(request.name, request.key)
        live = sum(1 for slot in group if slot.live(now) and slot is not mine)
        waiting = mine if mine is not None and mine.state == WAITING else None
        ahead = sum(
            1
            for slot in group
            if slot.state == WAITING
            and slot is not mine
            and running(slot.instance_id)
            and _ahead(slot, priority, waiting)
        )
        if live + ahead < request.limit:
            self._slots[ident] = Slot(
                request.name,
                request.key,
                instance_id,
                step,
                HOLDING,
                priority,
                request.limit,
                now,
                next(self._order),
                now,
                now + lease,
                request.per,
            )
            return True
        if waiting is None:
            self._slots[ident] = Slot(
                request.name,
                request.key,
                instance_id,
                step,
                WAITING,
                priority,
                request.limit,
                now,
                next(self._order),
                per=request.per,
            )
        return False

    def release(
        self,
        instance_id: UUID,
        step: str,
        request: SlotRequest,
        *,
        lease: timedelta,
        now: datetime,
        running: Callable[[UUID], bool],
    ) -> list[tuple[UUID, str]]:
        slot = self._slots.pop((request.name, request.key, instance_id, step), None)
        if request.per is not None and slot is not None and slot.state == HOLDING:
            spent = replace(
                slot, instance_id=SPENT, step=f"{step}@{slot.order}", expires_at=now + request.per
            )
            self._slots[(spent.name, spent.key, SPENT, spent.step)] = spent
        return self.admit_next(request.name, request.key, request.limit, lease, now, running)

    def admit_next(
        self,
        name: str,
        key: str,
        limit: int,
        lease: timedelta,
        now: datetime,
        running: Callable[[UUID], bool],
    ) -> list[tuple[UUID, str]]:
        """Admit waiters in line while there is room; forget those that cannot run."""
        group = self._group(name, key)
        room = limit - sum(1 for slot in group if slot.live(now))
        admitted = []
        waits = []
        for slot in sorted((s for s in group if s.state == WAITING), key=Slot.line_order):
            ident = (slot.name, slot.key, slot.instance_id, slot.step)
            if not running(slot.instance_id):
                del self._slots[ident]
                continue
            if room <= 0:
                break
            self._slots[ident] = replace(
                slot, state=HOLDING, acquired_at=now, expires_at=now + lease
            )
            admitted.append((slot.instance_id, slot.step))
            waits.append(max((now - slot.enqueued_at).total_seconds(), 0.0))
            room -= 1
        waited(name, waits)
        return admitted

    def admit_waiting(
        self, lease: timedelta, now: datetime, running: Callable[[UUID], bool]
    ) -> list[tuple[UUID, str]]:
        """The sweep's pass: admit waiters wherever holders' leases lapsed."""
        for ident, slot in list(self._slots.items()):
            if slot.instance_id != SPENT and slot.per is not None and not running(slot.instance_id):
                del self._slots[ident]
                self._spend(slot, now)
        groups: dict[tuple[str, str], int] = {}
        for slot in self._slots.values():
            if slot.state == WAITING:
                known = groups.get((slot.name, slot.key), 0)
                groups[(slot.name, slot.key)] = max(known, slot.capacity)
        admitted = []
        for (name, key), limit in groups.items():
            admitted.extend(
                self.admit_next(name, key, limit, slot_lease(name, lease), now, running)
            )
        for ident, slot in list(self._slots.items()):
            if slot.state == HOLDING and not slot.live(now):
                del self._slots[ident]
        return admitted

    def free(
        self,
        instance_id: UUID,
        *,
        lease: timedelta,
        now: datetime,
        running: Callable[[UUID], bool],
    ) -> list[tuple[UUID, str]]:
        """Drop every slot and place in line of the instance (cancelled, deleted or ended; a rate
        limit's holding slot is spent for its window, not dropped), then admit the next waiters
        of each limit it was in."""
        limits: dict[tuple[str, str], int] = {}
        for ident, slot in list(self._slots.items()):
            if slot.instance_id == instance_id:
                known = limits.get((slot.name, slot.key), 0)
                limits[(slot.name, slot.key)] = max(known, slot.capacity)
                del self._slots[ident]
                self._spend(slot, now)
        admitted = []
        for (name, key), limit in sorted(limits.items()):
            admitted.extend(self.admit_next(name, key, limit, lease, now, running))
        return admitted

    def _spend(self, slot: Slot, now: datetime) -> None:
        """Keep a rate limit's holding ``slot`` (just removed) spent for its window."""
        if slot.per is None or slot.state != HOLDING:
            return
        step = f"{slot.step}@{slot.order}"
        spent = replace(slot, instance_id=SPENT, step=step, expires_at=now + slot.per)
        self._slots[(spent.name, spent.key, SPENT, spent.step)] = spent

    def renew(self, instance_id: UUID, now: datetime, until: datetime) -> None:
        """Extend the instance's live holders to ``until`` (its lease was renewed at ``now``).

        A holder that lapsed stays lapsed: admissions count it free from its expiry on, so
        another may hold the slot already, and reviving it would make one holder too many."""
        for ident, slot in self._slots.items():
            if slot.instance_id == instance_id and slot.live(now):
                assert slot.expires_at is not None
                self._slots[ident] = replace(slot, expires_at=max(slot.expires_at, until))

    def forget(self, instance_id: UUID, now: datetime) -> None:
        """Drop every slot and place in line of a deleted instance (a rate limit's holding
        slot is spent for its window)."""
        for ident in [i for i, slot in self._slots.items() if slot.instance_id == instance_id]:
            self._spend(self._slots.pop(ident), now)

    def usage(self, now: datetime) -> list[LimitUse]:
        counts: dict[tuple[str, str], list[int]] = {}
        for slot in self._slots.values():
            entry = counts.setdefault((slot.name, slot.key), [0, 0, 0])
            entry[0] += slot.live(now)
            entry[1] += slot.state == WAITING
            entry[2] = max(entry[2], slot.capacity)
        return [
            LimitUse(name, key, holding, waiting, limit)
            for (name, key), (holding, waiting, limit) in sorted(counts.items())
        ]

    def places(self, instance_id: UUID) -> list[Place]:
        found = []
        for slot in self._slots.values():
            if slot.instance_id != instance_id or slot.state != WAITING:
                continue
            ahead = sum(
                1
                for other in self._group(slot.name, slot.key)
                if other.state == WAITING and other.line_order() < slot.line_order()
            )
            found.append(Place(slot.step, slot.name, slot.key, ahead + 1))
        return sorted(found, key=lambda place: place.step)

    def holders(self, now: datetime) -> list[Slot]:
        """The live holders (for tests and the property)."""
        return [slot for slot in self._slots.values() if slot.live(now)]

    def _group(self, name: str, key: str) -> Iterable[Slot]:
        return [slot for slot in self._slots.values() if slot.name == name and slot.key == key]


# --- who is told how long admitted waiters waited (the throttle metrics) ------------------------

WaitObserver = Callable[[str, Sequence[float]], None]
_wait_observers: list[WaitObserver] = []


def observe_waits(observer: WaitObserver) -> None:
    """Call ``observer(limit, seconds)`` whenever waiters of ``limit`` are admitted, with how
    long each waited in line (from joining it to its admission); see :mod:`~hephaestus_django.
    telemetry`. Told as the admission is made, inside its transaction."""
    if observer not in _wait_observers:
        _wait_observers.append(observer)


def stop_observing_waits(observer: WaitObserver) -> None:
    if observer in _wait_observers:
        _wait_observers.remove(observer)


def waited(limit: str, seconds: Sequence[float]) -> None:
    """Tell the observers that waiters of ``limit`` were admitted after ``seconds``; one that
    raises is logged, and the admission goes on."""
    if not seconds:
        return
    for observer in list(_wait_observers):
        try:
            observer(limit, seconds)
        except Exception:
            logger.exception("an observer of concurrency waits raised; the admission goes on")


def _ahead(slot: Slot, priority: int, mine: Slot | None) -> bool:
    """Whether the waiter ``slot`` stands before a request of ``priority`` (already in line as
    ``mine``, or new: behind every waiter of its priority)."""
    if slot.priority != priority:
        return slot.priority > priority
    return mine is None or slot.line_order() < mine.line_order()
