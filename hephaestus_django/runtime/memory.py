"""A thread-safe storage in process memory, for tests and for running without a database.

It keeps each instance as the same JSON text the PostgreSQL backend writes,
so it refuses what PostgreSQL would refuse and gives back fresh objects that
share nothing with the caller's. Its clock (``clock=``, the process's by default)
plays the database's: leases, claims and timers are measured against it, so a
test can move time on by giving it a clock of its own. It passes the same contract suite as
``DjangoStorage``; ship it in your own tests with
``hephaestus_django.runtime.configure(storages={"default": InMemoryStorage()})``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

from hephaestus_django.core import engine
from hephaestus_django.core.errors import (
    DuplicateInstanceError,
    InstanceDeletedError,
    InstanceNotFound,
    StaleInstanceError,
)
from hephaestus_django.core.flow import SlotRequest
from hephaestus_django.core.instance import Instance, Running, evolve, instance_key
from hephaestus_django.core.status import Status
from hephaestus_django.runtime import codec
from hephaestus_django.runtime.clock import utcnow
from hephaestus_django.runtime.contract import MapCounts, MapItemState, ScheduleState, WorkflowPause
from hephaestus_django.runtime.debounce import Debounced, PendingStart, PendingStarts
from hephaestus_django.runtime.document import (
    StoredRow,
    decode_claimed,
    decode_rows,
    encoded_running,
    from_row,
    to_row,
)
from hephaestus_django.runtime.filters import claim_limit, parse_filters
from hephaestus_django.runtime.leases import runs_elsewhere
from hephaestus_django.runtime.limits import check_state_size
from hephaestus_django.runtime.slots import LimitUse, Place, SlotTable, is_parked


@dataclass(frozen=True, slots=True)
class _Record:
    row: StoredRow
    text: str


class InMemoryStorage:
    """Instances in a dict guarded by a lock; implements the storage contract."""

    def __init__(self, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._records: dict[UUID, _Record] = {}
        self._claims: dict[str, UUID] = {}
        """The business keys held (their claims), and by which instance."""
        # Re-entrant: an update's change may record a map item, and a rewind forgets map
        # items from inside its update's change.
        self._lock = threading.RLock()
        self._clock = clock
        self._map_items: dict[tuple[UUID, str], dict[int, tuple[MapItemState, str | None]]] = {}
        """Each map step's items (:class:`MapItems`): their state, and the result as JSON text."""
        self._schedules: dict[str, ScheduleState] = {}
        self._pending_starts = PendingStarts()
        self._workflow_pauses: dict[tuple[str, int], WorkflowPause] = {}
        self._slots = SlotTable()

    def get(self, instance_id: UUID | str) -> Instance:
        key = instance_key(instance_id)
        record = self._records.get(key) if key is not None else None
        if record is None:
            raise InstanceNotFound(instance_id)
        return _decoded(record)

    def put(self, instance: Instance) -> None:
        row = to_row(instance)
        text = codec.dumps_encoded(row.state)
        with self._lock:
            self._write(instance, row, text)

    def update(self, instance_id: UUID | str, change: Callable[[Instance], Instance]) -> Instance:
        with self._lock:
            current = self.get(instance_id)
            changed = change(current)
            if changed is not current:
                row = to_row(changed)
                self._write(changed, row, codec.dumps_encoded(row.state))
            return changed

    def now(self) -> datetime:
        """The storage's time: its ``clock``."""
        return self._clock()

    def schedule_states(self, names: Sequence[str]) -> dict[str, ScheduleState]:
        with self._lock:
            now = self._clock()
            for name in names:
                self._schedules.setdefault(name, ScheduleState(name, False, now, None, None, now))
            return {name: self._schedules[name] for name in names}

    def advance_schedule(self, name: str, tick: datetime, next_due: datetime | None) -> bool:
        with self._lock:
            state = self._schedules.get(name)
            if state is None or (state.last_tick is not None and state.last_tick >= tick):
                return False
            self._schedules[name] = state._replace(
                last_tick=tick, next_due=next_due, updated_at=self._clock()
            )
            return True

    def pause_schedule(self, name: str, paused: bool, next_due: datetime | None) -> bool:
        with self._lock:
            now = self._clock()
            state = self._schedules.get(name) or ScheduleState(name, False, now, None, None, now)
            changed = state.paused != paused
            if changed:
                state = state._replace(paused=paused, next_due=next_due, updated_at=now)
                if not paused:
                    state = state._replace(since=now)
            self._schedules[name] = state
            return changed

    def push_start(
        self, pending: PendingStart, window: timedelta, max_wait: timedelta | None
    ) -> Debounced:
        with self._lock:
            return self._pending_starts.push(pending, window, max_wait, self._clock())

    def due_starts(self, limit: int) -> list[PendingStart]:
        with self._lock:
            return self._pending_starts.due(limit, self._clock())

    def take_start(self, workflow: str, key: str, instance_id: UUID) -> PendingStart | None:
        with self._lock:
            return self._pending_starts.take(workflow, key, instance_id, self._clock())

    def forget_schedules(self, keep: Sequence[str]) -> list[str]:
        kept = set(keep)
        with self._lock:
            gone = [name for name in self._schedules if name not in kept]
            for name in gone:
                del self._schedules[name]
            return gone

    def pause_workflow(self, workflow: str, version: int, reason: str | None) -> bool:
        with self._lock:
            if (workflow, version) in self._workflow_pauses:
                return False
            held = WorkflowPause(workflow, version, reason, self._clock())
            self._workflow_pauses[(workflow, version)] = held
            return True

    def unpause_workflow(self, workflow: str, version: int) -> bool:
        with self._lock:
            return self._workflow_pauses.pop((workflow, version), None) is not None

    def workflow_pauses(self) -> list[WorkflowPause]:
        with self._lock:
            return [self._workflow_pauses[key] for key in sorted(self._workflow_pauses)]

    def claim(self, owner: str, *, lease: timedelta, limit: int) -> list[Instance]:
        limit = claim_limit(limit)
        with self._lock:
            now = self._clock()
            until = now + lease
            wanted = [
                record
                for record in sorted(self._records.values(), key=_age)
                if _needs_worker(record.row, now)
            ][:limit]
            leased = []
            for record in wanted:
                row = replace(
                    record.row,
                    lease_owner=owner,
                    lease_expires_at=until,
                    revision=record.row.revision + 1,
                )
                self._records[row.id] = _Record(row, record.text)
                leased.append(self._records[row.id])
            claimed, quarantined = decode_claimed(leased, _with_state, _identify)
            for bad in quarantined:
                record = self._records[bad.id]
                self._records[bad.id] = _Record(
                    replace(
                        record.row,
                        quarantine_reason=bad.reason,
                        lease_owner=None,
                        lease_expires_at=None,
                    ),
                    record.text,
                )
            return claimed

    def mark_running(
        self,
        instance_id: UUID | str,
        step: str,
        on: str,
        attempt: int | None = None,
    ) -> Instance | None:
        with self._lock:
            current = self.get(instance_id)
            target = current.workflow.graph.by_path.get(step)
            if target is None or target not in engine.runnable_steps(current):
                return None
            if attempt is not None and current.attempts.get(target, 0) + 1 != attempt:
                return None
            now = self._clock()
            if runs_elsewhere(current, target, now):
                return None
            # As the SQL does: the marks and a new revision, nothing else (not updated_at, not
            # the lease: the job's heartbeat renews it).
            marked = evolve(
                current,
                running={**current.running, target: Running(on, now)},
                revision=current.revision + 1,
            )
            record = self._records[marked.id]
            self._records[marked.id] = _Record(
                replace(record.row, running=encoded_running(marked), revision=marked.revision),
                record.text,
            )
            return marked

    def renew(self, instance_id: UUID | str, owner: str, lease: timedelta) -> bool:
        key = instance_key(instance_id)
        with self._lock:
            now = self._clock()
            until = now + lease
            record = self._records.get(key) if key is not None else None
            if record is None or record.row.lease_owner != owner:
                return False
            self._records[record.row.id] = _Record(
                replace(record.row, lease_expires_at=until), record.text
            )
            self._slots.renew(record.row.id, now, until)
            return True

    # --- concurrency slots (SlotKeeping) -----------------------------------------------------

    def admit(
        self,
        instance_id: UUID,
        step: str,
        request: SlotRequest,
        *,
        priority: int,
        lease: timedelta,
    ) -> bool:
        with self._lock:
            return self._slots.admit(
                instance_id,
                step,
                request,
                priority=priority,
                lease=lease,
                now=self._clock(),
                running=self._running,
            )

    def release(
        self, instance_id: UUID, step: str, request: SlotRequest, *, lease: timedelta
    ) -> list[tuple[UUID, str]]:
        with self._lock:
            now = self._clock()
            admitted = self._slots.release(
                instance_id, step, request, lease=lease, now=now, running=self._running
            )
            self._wake(admitted, now)
            return admitted

    def admit_waiting(self, *, lease: timedelta) -> list[tuple[UUID, str]]:
        with self._lock:
            now = self._clock()
            admitted = self._slots.admit_waiting(lease, now, self._running)
            self._wake(admitted, now)
            return admitted

    def lock_slots(self, instance_id: UUID) -> None:
        """Nothing to do: every operation runs under the storage's one lock."""

    def free(self, instance_id: UUID, *, lease: timedelta) -> list[tuple[UUID, str]]:
        with self._lock:
            now = self._clock()
            admitted = self._slots.free(instance_id, lease=lease, now=now, running=self._running)
            self._wake(admitted, now)
            return admitted

    def limits(self) -> list[LimitUse]:
        with self._lock:
            return self._slots.usage(self._clock())

    def places(self, instance_id: UUID) -> list[Place]:
        with self._lock:
            return self._slots.places(instance_id)

    def _running(self, instance_id: UUID) -> bool:
        record = self._records.get(instance_id)
        return record is not None and record.row.status == Status.RUNNING.value

    def _wake(self, admitted: list[tuple[UUID, str]], now: datetime) -> None:
        """Make the parked leases of admitted instances due; the caller holds the lock."""
        for instance_id, _step in admitted:
            record = self._records.get(instance_id)
            if record is not None and is_parked(record.row.lease_owner):
                self._records[instance_id] = _Record(
                    replace(record.row, lease_expires_at=now), record.text
                )

    def _write(self, instance: Instance, row: StoredRow, text: str) -> None:
        """Store ``row`` if ``instance.revision`` is current; the caller holds the lock.

        Only a new instance (revision 0) is inserted: a later write whose row is gone raises
        ``InstanceDeletedError``, so a deleted instance stays deleted. A state longer than
        the bound (:mod:`~hephaestus_django.runtime.limits`) is refused first.

        ``row`` is the one ``put`` or ``update`` has just built with ``to_row``, shared with
        nothing else: it is completed in place (what ``dataclasses.replace`` would copy costs
        more than the rest of this method, on every write).
        """
        check_state_size(text, instance.id)
        stored = self._records.get(row.id)
        if stored is None and instance.revision > 0:
            raise InstanceDeletedError(instance.id, instance.revision)
        if stored is not None and stored.row.revision != instance.revision:
            raise StaleInstanceError(instance.id, instance.revision)
        self._hold_key(instance, row, stored.row if stored is not None else None)
        now = self._clock()
        row.state = None
        row.revision = instance.revision + 1
        row.inserted_at = stored.row.inserted_at if stored else now
        row.updated_at = now
        if stored is not None and row.upgraded_from != stored.row.workflow_version:
            row.workflow_version = stored.row.workflow_version
        self._records[row.id] = _Record(row, text)
        instance.revision = row.revision
        instance.inserted_at = row.inserted_at
        instance.updated_at = row.updated_at
        instance.workflow_version = row.workflow_version

    def _hold_key(self, instance: Instance, row: StoredRow, stored: StoredRow | None) -> None:
        """Record the instance's claim on its business key; ``DuplicateInstanceError`` when
        another instance holds it. The caller holds the lock."""
        claim = row.key_claim
        holder = self._claims.get(claim) if claim is not None else None
        if claim is not None and holder is not None and holder != row.id:
            raise DuplicateInstanceError(
                str(row.business_key), instance.workflow.__qualname__, holder
            )
        if stored is not None and stored.key_claim is not None and stored.key_claim != claim:
            self._claims.pop(stored.key_claim, None)
        if claim is not None:
            self._claims[claim] = row.id

    def delete(self, instance_id: UUID | str) -> None:
        key = instance_key(instance_id)
        if key is None:
            return
        with self._lock:
            self._slots.forget(key, self.now())
            record = self._records.pop(key, None)
            self._forget_map_items(key)
            if record is not None and record.row.key_claim is not None:
                self._claims.pop(record.row.key_claim, None)

    def query(self, *, limit: int | None = None, **filters: Any) -> list[Instance]:
        parsed = parse_filters(filters, limit=limit)
        if parsed.matches_nothing:
            return []
        with self._lock:
            records = list(self._records.values())
        matching = sorted(
            (
                record
                for record in records
                if parsed.match(
                    id=record.row.id,
                    status=record.row.status,
                    workflow=record.row.workflow,
                    workflow_version=record.row.workflow_version,
                    business_key=record.row.business_key,
                    metadata=partial(_metadata, record) if parsed.needs_metadata else None,
                )
            ),
            key=_age,
        )
        if parsed.limit is not None:
            matching = matching[: parsed.limit]
        return decode_rows(matching, _with_state)

    def clear(self) -> None:
        """Forget every instance."""
        with self._lock:
            self._records.clear()
            self._claims.clear()
            self._map_items.clear()
            self._slots = SlotTable()

    # --- map items (MapItems) ------------------------------------------------------------

    def map_progress(self, instance_id: UUID | str, step: str) -> dict[int, MapItemState]:
        key = instance_key(instance_id)
        with self._lock:
            items = self._map_items.get((key, step), {}) if key is not None else {}
            return {index: state for index, (state, _) in items.items()}

    def record_map_item(
        self,
        instance_id: UUID | str,
        step: str,
        index: int,
        *,
        attempts: int,
        done: bool,
        result: Any = None,
        failed: bool = False,
    ) -> None:
        key = instance_key(instance_id)
        if key is None:
            raise InstanceNotFound(instance_id)
        kept = done or failed
        text = codec.dumps(codec.encode(result, path=f"item {index} of {step}")) if kept else None
        state = MapItemState(done=done, attempts=attempts, failed=failed and not done)
        with self._lock:
            if key not in self._records:
                raise InstanceNotFound(key)
            items = self._map_items.setdefault((key, step), {})
            items[index] = (state, text)

    # --- map items as jobs (MapItemJobs) ----------------------------------------------------

    def map_item(self, instance_id: UUID | str, step: str, index: int) -> MapItemState | None:
        key = instance_key(instance_id)
        with self._lock:
            found = self._map_items.get((key, step), {}).get(index) if key is not None else None
        return found[0] if found is not None else None

    def mark_map_item(self, instance_id: UUID | str, step: str, index: int) -> MapItemState | None:
        key = instance_key(instance_id)
        if key is None:
            raise InstanceNotFound(instance_id)
        with self._lock:
            if key not in self._records:
                raise InstanceNotFound(key)
            items = self._map_items.setdefault((key, step), {})
            state, text = items.get(index, (MapItemState(done=False, attempts=0), None))
            if state.done or state.running:
                return None
            items[index] = (replace(state, running=True), text)
            return items[index][0]

    def map_counts(self, instance_id: UUID | str, step: str) -> MapCounts:
        key = instance_key(instance_id)
        with self._lock:
            items = dict(self._map_items.get((key, step), {})) if key is not None else {}
        states = {index: state for index, (state, _) in items.items()}
        failed = [index for index, state in states.items() if state.failed]
        return MapCounts(
            done=sum(state.done for state in states.values()),
            failed=len(failed),
            running=sum(state.running for state in states.values()),
            first_failed=min(failed) if failed else None,
        )

    def map_trouble(self, instance_id: UUID | str, step: str) -> MapCounts:
        return self.map_counts(instance_id, step)._replace(done=0)

    def map_failure(self, instance_id: UUID | str, step: str, index: int) -> tuple[int, str]:
        key = instance_key(instance_id)
        with self._lock:
            found = self._map_items.get((key, step), {}).get(index) if key is not None else None
        if found is None or found[1] is None:
            return (found[0].attempts if found else 0), "(not recorded)"
        error = codec.loads(found[1])
        return found[0].attempts, error if isinstance(error, str) else "(not recorded)"

    def restart_map_items(self, instance_id: UUID | str, step: str) -> None:
        key = instance_key(instance_id)
        with self._lock:
            items = self._map_items.get((key, step), {}) if key is not None else {}
            for index, (state, text) in list(items.items()):
                if state.failed:
                    items[index] = (MapItemState(done=False, attempts=0), None)
                elif state.running:
                    items[index] = (replace(state, running=False), text)

    def forget_map_items(self, instance_id: UUID | str, steps: Sequence[str]) -> int:
        key = instance_key(instance_id)
        if key is None:
            return 0
        with self._lock:
            lost = set(steps)
            found = [f for f in self._map_items if f[0] == key and f[1].split("#")[0] in lost]
            return sum(len(self._map_items.pop(f)) for f in found)

    def map_results(self, instance_id: UUID | str, step: str) -> list[Any]:
        key = instance_key(instance_id)
        with self._lock:
            items = dict(self._map_items.get((key, step), {})) if key is not None else {}
        return [
            codec.decode(codec.loads(text), path=f"item {index} of {step}")
            for index, (state, text) in sorted(items.items())
            if state.done and text is not None
        ]

    def _forget_map_items(self, key: UUID) -> None:
        """The map items of a deleted instance go with it (the lock is held)."""
        for found in [found for found in self._map_items if found[0] == key]:
            del self._map_items[found]

    def __len__(self) -> int:
        return len(self._records)


def _with_state(record: _Record) -> StoredRow:
    text = record.text
    return replace(record.row, state=codec.loads(text), plain=codec.is_plain(text))


def _metadata(record: _Record) -> Any:
    """The runtime metadata of a stored instance, as stored (for the ``schedule`` filter)."""
    state = codec.loads(record.text)
    return state.get("runtime_metadata") if isinstance(state, dict) else None


def _decoded(record: _Record) -> Instance:
    return from_row(_with_state(record))


def _identify(record: _Record) -> tuple[UUID, int]:
    return record.row.id, record.row.revision


def _age(record: _Record) -> tuple[Any, str]:
    return (record.row.inserted_at, str(record.row.id))


def _needs_worker(row: StoredRow, now: datetime) -> bool:
    """A timer is due, or the instance runs with no live lease, and it is not quarantined
    (the same rule as SQL).

    A lease is live while its expiry is in the future (an owner is always written with it).
    """
    if row.quarantine_reason is not None:
        return False
    lease_live = row.lease_expires_at is not None and row.lease_expires_at > now
    due = row.due_at is not None and row.due_at <= now
    return not lease_live and (due or row.status == Status.RUNNING.value)
