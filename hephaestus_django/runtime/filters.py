"""The filters ``storage.query()`` accepts, parsed once for every backend.

Backends translate a :class:`QueryFilters` into their own lookups (a SQL
``WHERE``, a Python predicate), so what a filter means cannot drift between
them. Unknown names are a ``TypeError``, never silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from hephaestus_django.core.children import PARENT_KEY
from hephaestus_django.core.errors import InvalidInstanceError, InvalidQueryError
from hephaestus_django.core.instance import coerce_instance_id
from hephaestus_django.core.status import Status
from hephaestus_django.core.text import shown, unstorable
from hephaestus_django.core.workflow import WorkflowDefinition, tagged

FILTER_NAMES = (
    "id",
    "key",
    "status",
    "status_in",
    "workflow",
    "workflow_version",
    "workflow_family",
    "tag",
    "schedule",
    "parent",
)


@dataclass(frozen=True, slots=True)
class QueryFilters:
    """Normalised filters; ``None`` means "not filtered on"."""

    id: UUID | None = None
    statuses: frozenset[str] | None = None
    workflow: str | None = None
    workflow_version: int | None = None
    workflow_family: str | None = None
    key: str | None = None
    """The business key (``start(..., key=...)``)."""
    workflows: frozenset[str] | None = None
    """The workflows carrying the ``tag`` asked for (dotted paths), resolved through the
    registry when the filters are parsed."""
    schedule: str | None = None
    """The schedule that started the instances (its name, as in their
    ``runtime_metadata["schedule"]["name"]``): a tick's, a trigger's or a backfill's."""
    parent: UUID | None = None
    """The instance that started them as its children (a ``Child`` step's, a map's over child
    workflows), as their ``runtime_metadata["hephaestus.parent"]["id"]`` names it."""
    limit: int | None = None
    matches_nothing: bool = False
    """True when the filters contradict themselves (a malformed id, an empty status_in)."""

    def match(
        self,
        *,
        id: UUID,
        status: str,
        workflow: str,
        workflow_version: int,
        business_key: str | None = None,
        metadata: Callable[[], Any] | None = None,
    ) -> bool:
        """The same predicate a SQL backend expresses, for backends that filter in Python.

        ``metadata`` returns the instance's runtime metadata, asked for only when filtering on
        a schedule or a parent (a backend may have to decode the state for it)."""
        return not self.matches_nothing and (
            (self.id is None or id == self.id)
            and (self.key is None or business_key == self.key)
            and (self.statuses is None or status in self.statuses)
            and (self.workflow is None or workflow == self.workflow)
            and (self.workflow_version is None or workflow_version == self.workflow_version)
            and (self.workflow_family is None or in_family(workflow, self.workflow_family))
            and (self.workflows is None or workflow in self.workflows)
            and (
                self.schedule is None
                or (metadata is not None and started_by(metadata()) == self.schedule)
            )
            and (
                self.parent is None
                or (metadata is not None and parent_id_in(metadata()) == str(self.parent))
            )
        )

    @property
    def needs_metadata(self) -> bool:
        """Whether :meth:`match` asks for the runtime metadata."""
        return self.schedule is not None or self.parent is not None


SCHEDULE_METADATA = "schedule"
"""The key of ``runtime_metadata`` under which a schedule's instance says which schedule and
tick started it: ``{"name": ..., "tick": ...}``."""


def started_by(metadata: object) -> str | None:
    """The name of the schedule that started an instance with this runtime metadata."""
    if isinstance(metadata, dict):
        mark = metadata.get(SCHEDULE_METADATA)
        if isinstance(mark, dict) and isinstance(mark.get("name"), str):
            return str(mark["name"])
    return None


def schedule_document(name: str) -> dict[str, Any]:
    """The part of an instance's stored state that names the schedule that started it: what
    a SQL backend matches with ``state @> ...`` (through the state's GIN index)."""
    return {"runtime_metadata": {SCHEDULE_METADATA: {"name": name}}}


def parent_id_in(metadata: object) -> str | None:
    """The id of the parent named in an instance's runtime metadata, as stored (a string)."""
    if isinstance(metadata, dict):
        link = metadata.get(PARENT_KEY)
        if isinstance(link, dict) and isinstance(link.get("id"), str):
            return str(link["id"])
    return None


def parent_document(parent: UUID) -> dict[str, Any]:
    """The part of a child's stored state that names its parent, for ``state @> ...``."""
    return {"runtime_metadata": {PARENT_KEY: {"id": str(parent)}}}


def in_family(workflow: str, family: str) -> bool:
    """``shop.flows`` contains ``shop.flows.Order`` and itself, not ``shop.flowsy.X``.

    A family ending in ``.`` is a plain prefix.
    """
    if family.endswith("."):
        return workflow.startswith(family)
    return workflow == family or workflow.startswith(family + ".")


def parse_filters(filters: Mapping[str, Any], *, limit: int | None = None) -> QueryFilters:
    """Check and normalise ``query(**filters)``; raise on anything unknown or malformed."""
    unknown = sorted(set(filters) - set(FILTER_NAMES))
    if unknown:
        raise TypeError(
            f"query() got unknown filter(s) {', '.join(unknown)}; "
            f"the filters are {', '.join(FILTER_NAMES)}"
        )
    parsed: dict[str, Any] = {"limit": _limit(limit)}
    if "id" in filters:
        try:
            parsed["id"] = coerce_instance_id(filters["id"])
        except InvalidInstanceError:
            parsed["matches_nothing"] = True
    statuses = _statuses(filters)
    if statuses is not None:
        parsed["statuses"] = statuses
        parsed["matches_nothing"] = parsed.get("matches_nothing", False) or not statuses
    if "workflow" in filters:
        parsed["workflow"] = workflow_name(filters["workflow"], "workflow")
    if "workflow_version" in filters:
        parsed["workflow_version"] = _version(filters["workflow_version"])
    if "key" in filters:
        key = filters["key"]
        if not isinstance(key, str):
            raise InvalidQueryError(f"key must be a business key (a string), not {key!r}")
        parsed["key"] = _storable(key, "key")
    if "workflow_family" in filters:
        family = filters["workflow_family"]
        if not isinstance(family, str) or not family:
            raise InvalidQueryError(f"workflow_family must be a dotted path, not {family!r}")
        parsed["workflow_family"] = _storable(family, "workflow_family")
    if "tag" in filters:
        tag = filters["tag"]
        if not isinstance(tag, str) or not tag:
            raise InvalidQueryError(f"tag must be a workflow tag (a string), not {tag!r}")
        parsed["workflows"] = frozenset(tagged(tag))
        parsed["matches_nothing"] = parsed.get("matches_nothing", False) or not parsed["workflows"]
    if "schedule" in filters:
        schedule = filters["schedule"]
        if not isinstance(schedule, str) or not schedule:
            raise InvalidQueryError(f"schedule must be a schedule's name, not {schedule!r}")
        parsed["schedule"] = _storable(schedule, "schedule")
    if "parent" in filters:
        try:
            parsed["parent"] = coerce_instance_id(filters["parent"])
        except InvalidInstanceError:
            raise InvalidQueryError(
                f"parent must be an instance id, not {filters['parent']!r}"
            ) from None
    return QueryFilters(**parsed)


def workflow_name(value: object, label: str) -> str:
    """A workflow class or its stored dotted path, as the stored string."""
    if isinstance(value, type) and issubclass(value, WorkflowDefinition):
        return value.path()
    if isinstance(value, str) and value:
        return _storable(value, label)
    raise InvalidQueryError(f"{label} must be a workflow class or its dotted path, not {value!r}")


def _storable(text: str, label: str) -> str:
    """``text`` unless it holds what PostgreSQL cannot (NUL, a lone surrogate): nothing stored
    can equal it, and the driver would fail on it mid-query, so it is refused first."""
    problem = unstorable(text)
    if problem is not None:
        raise InvalidQueryError(
            f"the {label} filter {shown(text)} contains {problem}, so no instance can match it; "
            "remove it"
        )
    return text


def status_value(value: object) -> str:
    """A :class:`Status` or its stored string, as the stored string."""
    if isinstance(value, str) and value in Status.__members__.values():
        return Status(value).value
    known = ", ".join(status.value for status in Status)
    raise InvalidQueryError(f"unknown status {value!r}; use one of {known}")


def _statuses(filters: Mapping[str, Any]) -> frozenset[str] | None:
    statuses: frozenset[str] | None = None
    if "status" in filters:
        statuses = frozenset({status_value(filters["status"])})
    if "status_in" in filters:
        given = filters["status_in"]
        if isinstance(given, (str, Status)) or not isinstance(given, Iterable):
            raise InvalidQueryError(f"status_in must be a list of statuses, not {given!r}")
        listed = frozenset(status_value(status) for status in given)
        statuses = listed if statuses is None else statuses & listed
    return statuses


def _version(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidQueryError(f"workflow_version must be a positive int, not {value!r}")
    return value


MAX_LIMIT = 2**63 - 1
"""The largest ``limit`` any backend takes: PostgreSQL's ``LIMIT`` is a bigint."""


def _limit(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT:
        shown = _shown(value)
        raise InvalidQueryError(
            f"limit must be an int from 0 to {MAX_LIMIT} (2**63 - 1), or None for no limit, "
            f"not {shown}"
        )
    return value


def claim_limit(value: object) -> int:
    """``claim``'s ``limit``, checked like ``query``'s, but at least 1."""
    limit = _limit(value)
    if limit is None or limit < 1:
        raise InvalidQueryError(f"a claim's limit must be a positive int, not {_shown(value)}")
    return limit


def _shown(value: object) -> str:
    """A short repr for an error message (an int may be too long to print at all)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an int of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:60]}..."
