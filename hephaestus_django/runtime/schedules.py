"""Schedules: a workflow started at the ticks of a cron expression, exactly once per tick.

A :class:`Schedule` names a workflow, a cron expression read in a time zone, the context each
instance starts with, a business-key template, and what to do with ticks missed while no worker
ran. The worker's pass asks :class:`Scheduler` to start what is due; any number of workers may
do so at once.

**Exactly once per tick, by construction.** A tick's instance gets an id made from the schedule's
name and the tick (:func:`tick_id`, a UUID 5). The instances table's primary key lets one insert of
that id through; every other worker's start of the same tick finds the id taken and counts the
tick as started. Unlike a business key, an id is never freed when the instance ends, so a tick
starts once even across restarts and whatever the workflow's ``key_scope``. The business key
(``schedule:<name>:<tick>`` by default) names the instance for lookups; a template without the
tick (``"nightly-report"``) under the ``"active"`` scope makes a tick whose predecessor still runs
return that one instead of starting another.

**Shared state.** The storage keeps a record per schedule (:class:`ScheduleTable`): paused,
the last tick started, and when ticks count from. A worker starts a tick and then moves the
record on; a worker that dies between the two leaves the tick to be found again, and its start
then finds the instance already there. Time is the storage's (the database's).

**Missed ticks.** When ticks fell while no worker ran, ``missed="skip"`` starts only the latest
of them; ``missed="catch_up"`` starts the latest ``catch_up_limit`` of them, oldest first, and
skips the older ones (logged). Ticks that fall while a schedule is paused are never run:
resuming counts from then. :meth:`Scheduler.backfill` starts the ticks of a past range on
purpose.

**Removed schedules.** A record whose schedule is configured no more starts nothing (ticks
come from the configured schedules only); :meth:`Scheduler.prune` deletes such records, as
``hephaestus_worker`` does when it starts and ``hephaestus_schedules prune`` on demand.

The cron expressions are read by croniter (five fields, or six with seconds; ``@daily`` and the
other nicknames), in the schedule's time zone, so ``0 2 * * *`` in ``Europe/Berlin`` is 02:00 in
Berlin, summer and winter. Around daylight-saving changes croniter moves a tick in the skipped
hour to its end (02:30 becomes 03:00) and gives a tick in the repeated hour twice, once per
offset: two ticks, two instances.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from hephaestus_django.core.errors import (
    DuplicateInstanceError,
    ScheduleError,
    StaleInstanceError,
)
from hephaestus_django.core.keys import checked_key
from hephaestus_django.core.workflow import WorkflowDefinition, workflow_registry
from hephaestus_django.runtime import codec
from hephaestus_django.runtime.contract import ScheduleState, ScheduleTable, Storage
from hephaestus_django.runtime.verbs import Runner

logger = logging.getLogger("hephaestus_django.schedules")

DEFAULT_KEY = "schedule:{name}:{iso}"
"""The business key of a tick's instance: the schedule's name and the tick in ISO 8601."""
MISSED = ("skip", "catch_up")
DEFAULT_CATCH_UP_LIMIT = 10
MAX_CATCH_UP_LIMIT = 1000
MAX_BACKFILL = 1000
"""The most ticks one backfill starts; a longer range is refused (split it)."""
NAMESPACE = uuid.UUID("2f6d1a34-5c1e-4b7a-9f0e-6a3c2b1d8e47")
"""The UUID 5 namespace of tick ids."""
_SAMPLE_TICK = datetime(2000, 1, 1)


@dataclass(frozen=True)
class Schedule:
    """One schedule: start ``workflow`` (a registered dotted path) at each tick of ``cron``.

    ``key`` is a :meth:`str.format` template with ``name`` (the schedule's), ``tick`` (an aware
    datetime in ``timezone``, so ``{tick:%Y-%m-%d}`` works) and ``iso`` (the tick in ISO 8601).
    """

    name: str
    workflow: str
    cron: str
    timezone: str = "UTC"
    context: Mapping[str, Any] = field(default_factory=dict)
    key: str = DEFAULT_KEY
    missed: Literal["skip", "catch_up"] = "skip"
    catch_up_limit: int = DEFAULT_CATCH_UP_LIMIT
    storage: str = "default"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def definition(self) -> type[WorkflowDefinition]:
        """The workflow class a tick starts (the current version of a versioned workflow)."""
        return workflow_registry.resolve(self.workflow).starting(None)

    def ticks_before(
        self, until: datetime, after: datetime, limit: int
    ) -> tuple[list[datetime], bool]:
        """The latest ``limit`` ticks in (``after``, ``until``], oldest first, and whether
        earlier ticks in that range were left out. Walks back from ``until``: bounded by
        ``limit`` however long ago ``after`` is."""
        # croniter's get_prev() leaves out its start: start a second later (ticks are whole
        # seconds) and pass over a tick after ``until``.
        start = until.replace(microsecond=0) + timedelta(seconds=1)
        walk = croniter(self.cron, start.astimezone(self.zone))
        found: list[datetime] = []
        while True:
            tick: datetime = walk.get_prev(datetime)
            if tick > until:
                continue
            if tick <= after:
                return found[::-1], False
            if len(found) == limit:
                return found[::-1], True
            found.append(tick)

    def ticks_between(self, start: datetime, end: datetime) -> list[datetime]:
        """Every tick in [``start``, ``end``], oldest first; ``ScheduleError`` past
        :data:`MAX_BACKFILL` of them."""
        walk = croniter(self.cron, (start - timedelta(microseconds=1)).astimezone(self.zone))
        ticks: list[datetime] = []
        while True:
            tick: datetime = walk.get_next(datetime)
            if tick > end:
                return ticks
            if len(ticks) == MAX_BACKFILL:
                raise ScheduleError(
                    f"schedule {self.name!r}: {start.isoformat()} to {end.isoformat()} holds more "
                    f"than {MAX_BACKFILL} ticks; backfill it in shorter ranges"
                )
            ticks.append(tick)

    def next_tick(self, after: datetime) -> datetime:
        """The first tick after ``after``."""
        tick: datetime = croniter(self.cron, after.astimezone(self.zone)).get_next(datetime)
        return tick

    def key_for(self, tick: datetime) -> str:
        """The business key of ``tick``'s instance."""
        local = tick.astimezone(self.zone)
        return self.key.format(name=self.name, tick=local, iso=local.isoformat())


def tick_id(name: str, tick: datetime) -> uuid.UUID:
    """The id of the instance schedule ``name`` starts for ``tick``: the same in every process."""
    return uuid.uuid5(NAMESPACE, f"{name}|{tick.astimezone(ZoneInfo('UTC')).isoformat()}")


def schedule_problems(schedule: Schedule) -> list[tuple[str, str, str]]:
    """What is wrong with ``schedule``, as (kind, message, hint); empty when it can run.

    Kinds: ``cron``, ``timezone``, ``workflow``, ``context``, ``key``, ``missed``. Used by the
    system checks; a worker leaves out a schedule that has any.
    """
    where = f"schedule {schedule.name!r}"
    problems: list[tuple[str, str, str]] = []
    if not isinstance(schedule.cron, str) or not croniter.is_valid(schedule.cron):
        try:
            croniter(schedule.cron)
            reason = "it is not a cron expression"
        except (CroniterError, TypeError, ValueError, AttributeError) as error:
            reason = str(error) or type(error).__name__
        problems.append(
            (
                "cron",
                f"{where}: {schedule.cron!r} is not a valid cron expression ({reason}).",
                "Use five fields (minute hour day-of-month month day-of-week), e.g. '0 2 * * *' "
                "for 02:00 every day, a sixth for seconds, or '@hourly', '@daily', '@weekly'.",
            )
        )
    try:
        if not isinstance(schedule.timezone, str) or not schedule.timezone:
            raise ValueError(schedule.timezone)
        ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        problems.append(
            (
                "timezone",
                f"{where}: {schedule.timezone!r} is not a known time zone.",
                "Use an IANA name such as 'UTC', 'Europe/Berlin' or 'America/New_York' "
                "(zoneinfo.available_timezones() lists them).",
            )
        )
    if not isinstance(schedule.workflow, str) or schedule.workflow not in workflow_registry:
        problems.append(
            (
                "workflow",
                f"{where}: no workflow {schedule.workflow!r} is registered.",
                "Name the workflow class by its dotted path (e.g. 'reports.workflows.Nightly') "
                "and define it in an installed app's workflows module.",
            )
        )
    try:
        if not isinstance(schedule.context, Mapping):
            raise TypeError(f"a dict, not {type(schedule.context).__name__}")
        codec.encode(dict(schedule.context), path="CONTEXT")
    except (ValueError, TypeError) as error:
        problems.append(
            (
                "context",
                f"{where}: its context cannot be stored: {error}.",
                "Use values JSON can hold, or datetime, date, time, timedelta, Decimal, UUID, "
                "set, tuple, bytes.",
            )
        )
    problems += _key_problems(schedule, where)
    if schedule.missed not in MISSED or not _catch_up_limit_ok(schedule.catch_up_limit):
        problems.append(
            (
                "missed",
                f"{where}: MISSED must be 'skip' or 'catch_up' (not {schedule.missed!r}) and "
                f"CATCH_UP_LIMIT a whole number from 1 to {MAX_CATCH_UP_LIMIT} (not "
                f"{schedule.catch_up_limit!r}).",
                "'skip' starts only the latest tick missed while no worker ran; 'catch_up' "
                "starts up to CATCH_UP_LIMIT of them, oldest first.",
            )
        )
    return problems


def _catch_up_limit_ok(limit: object) -> bool:
    return (
        isinstance(limit, int) and not isinstance(limit, bool) and 1 <= limit <= MAX_CATCH_UP_LIMIT
    )


def _key_problems(schedule: Schedule, where: str) -> list[tuple[str, str, str]]:
    hint = (
        "A str.format template with {name}, {tick} (a datetime: {tick:%Y-%m-%d}) and {iso}; "
        f"the default is {DEFAULT_KEY!r}."
    )
    try:
        if not isinstance(schedule.key, str):
            raise TypeError(f"a string, not {type(schedule.key).__name__}")
        checked_key(
            schedule.key.format(
                name=schedule.name, tick=_SAMPLE_TICK, iso=_SAMPLE_TICK.isoformat()
            ),
            schedule.workflow,
        )
    except (LookupError, ValueError, TypeError, AttributeError) as error:
        return [("key", f"{where}: its KEY template {schedule.key!r} fails: {error}.", hint)]
    return []


@dataclass(frozen=True)
class Started:
    """A tick handled: the instance it started, or found started already."""

    schedule: str
    tick: datetime
    instance_id: uuid.UUID
    new: bool


class Scheduler:
    """Starts the due ticks of ``schedules`` with ``runner``; also trigger, backfill, pause."""

    def __init__(self, schedules: Iterable[Schedule], runner: Runner) -> None:
        self.schedules = {schedule.name: schedule for schedule in schedules}
        self.runner = runner

    def get(self, name: str) -> Schedule:
        """The schedule named ``name``; ``ScheduleError`` naming the known ones."""
        try:
            return self.schedules[name]
        except KeyError:
            known = ", ".join(map(repr, self.schedules)) or "none"
            raise ScheduleError(
                f"no schedule named {name!r} is configured (configured: {known})"
            ) from None

    def run_due(self, storage_name: str, storage: Storage) -> list[Started]:
        """Start every due tick of the schedules stored in ``storage_name``.

        A schedule that fails (its workflow raises on start, a bad template) is logged and
        does not keep the others from their ticks.
        """
        mine = [s for s in self.schedules.values() if s.storage == storage_name]
        if not mine:
            return []
        table = _table(storage)
        states = table.schedule_states([schedule.name for schedule in mine])
        now = storage.now()
        started: list[Started] = []
        for schedule in mine:
            state = states[schedule.name]
            if state.paused:
                continue
            try:
                started += self._run_schedule(schedule, state, storage, table, now)
            except Exception:
                logger.exception("schedule %r: starting its due ticks failed", schedule.name)
        return started

    def _run_schedule(
        self,
        schedule: Schedule,
        state: ScheduleState,
        storage: Storage,
        table: ScheduleTable,
        now: datetime,
    ) -> list[Started]:
        after = max(state.since, state.last_tick) if state.last_tick else state.since
        limit = 1 if schedule.missed == "skip" else schedule.catch_up_limit
        ticks, skipped = schedule.ticks_before(now, after, limit)
        if skipped:
            logger.warning(
                "schedule %r: ticks before %s were missed while no worker ran; skipped (%s)",
                schedule.name,
                ticks[0].isoformat(),
                "MISSED='skip'"
                if schedule.missed == "skip"
                else f"CATCH_UP_LIMIT={schedule.catch_up_limit}",
            )
        started = []
        for tick in ticks:
            started.append(self._start(schedule, storage, tick, tick_id(schedule.name, tick)))
            table.advance_schedule(schedule.name, tick, schedule.next_tick(max(tick, now)))
        return started

    def trigger(self, name: str, storage: Storage) -> Started:
        """Start ``name``'s workflow now, as if a tick fell now; the schedule's own ticks are
        unchanged. Each trigger starts a new instance."""
        schedule = self.get(name)
        now = storage.now()
        return self._start(schedule, storage, now, uuid.uuid5(NAMESPACE, f"trigger|{name}|{now}"))

    def backfill(
        self, name: str, storage: Storage, start: datetime, end: datetime
    ) -> list[Started]:
        """Start each tick of ``name`` from ``start`` to ``end`` (both included, in the past),
        oldest first. A tick that has its instance already is not started again, so a
        backfill may be repeated. At most :data:`MAX_BACKFILL` ticks."""
        schedule = self.get(name)
        ticks = self.backfill_ticks(name, storage, start, end)
        return [self._start(schedule, storage, tick, instance_id) for tick, instance_id in ticks]

    def backfill_ticks(
        self, name: str, storage: Storage, start: datetime, end: datetime
    ) -> list[tuple[datetime, uuid.UUID]]:
        """The ticks :meth:`backfill` would start, with the id each one's instance has, and
        nothing started: what a preview shows. ``ScheduleError`` for bounds that are not
        aware datetimes, a range not in the past, or more than :data:`MAX_BACKFILL` ticks."""
        schedule = self.get(name)
        for bound in (start, end):
            if not isinstance(bound, datetime) or bound.tzinfo is None:
                raise ScheduleError(
                    f"schedule {name!r}: a backfill's bounds must be datetimes with a time zone, "
                    f"not {bound!r}"
                )
        now = storage.now()
        if end < start or end > now:
            raise ScheduleError(
                f"schedule {name!r}: backfill from {start.isoformat()} to {end.isoformat()} is "
                f"not a range in the past (now is {now.isoformat()}); give from <= to <= now"
            )
        return [(tick, tick_id(name, tick)) for tick in schedule.ticks_between(start, end)]

    def pause(self, name: str, storage: Storage) -> bool:
        """Stop ``name``'s ticks until :meth:`resume`; whether it was running."""
        self.get(name)
        return _table(storage).pause_schedule(name, True, None)

    def resume(self, name: str, storage: Storage) -> bool:
        """Start ``name``'s ticks again from now on; whether it was paused."""
        schedule = self.get(name)
        return _table(storage).pause_schedule(name, False, schedule.next_tick(storage.now()))

    def prune(self, storage: Storage, keep: Iterable[str] | None = None) -> list[str]:
        """Remove from ``storage`` the records of schedules not in ``keep`` (default: the
        schedules this scheduler has); the names removed, sorted. A record is what a removed
        schedule leaves behind: nothing starts from it (only configured schedules have ticks),
        and a schedule configured again under its name starts afresh, counting from then."""
        names = sorted(self.schedules if keep is None else set(keep))
        return sorted(_table(storage).forget_schedules(names))

    def states(self, storage_name: str, storage: Storage) -> dict[str, ScheduleState]:
        """The shared state of the schedules stored in ``storage_name``."""
        names = [s.name for s in self.schedules.values() if s.storage == storage_name]
        return _table(storage).schedule_states(names) if names else {}

    def _start(
        self, schedule: Schedule, storage: Storage, tick: datetime, instance_id: uuid.UUID
    ) -> Started:
        local = tick.astimezone(schedule.zone)
        try:
            self.runner.start(
                schedule.definition(),
                copy.deepcopy(dict(schedule.context)),
                storage=storage,
                id=instance_id,
                key=schedule.key_for(tick),
                metadata={"schedule": {"name": schedule.name, "tick": local.isoformat()}},
            )
        except StaleInstanceError:
            # The tick's id is taken: another worker (or an earlier pass) started it.
            return Started(schedule.name, local, instance_id, new=False)
        except DuplicateInstanceError as error:
            logger.info(
                "schedule %r: tick %s not started, its key is held by instance %s",
                schedule.name,
                local.isoformat(),
                error.existing_id,
            )
            return Started(schedule.name, local, error.existing_id, new=False)
        logger.info(
            "schedule %r: started instance %s for tick %s",
            schedule.name,
            instance_id,
            local.isoformat(),
        )
        return Started(schedule.name, local, instance_id, new=True)


def _table(storage: Storage) -> ScheduleTable:
    if not isinstance(storage, ScheduleTable):
        raise ScheduleError(
            f"storage {storage!r} keeps no schedules; use DjangoStorage or InMemoryStorage"
        )
    return storage


__all__ = [
    "DEFAULT_KEY",
    "MAX_BACKFILL",
    "Schedule",
    "Scheduler",
    "Started",
    "schedule_problems",
    "tick_id",
]
