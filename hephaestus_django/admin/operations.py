"""Resume, retry, cancel, upgrade, rewind, fork, pause and delete in the admin, so an operator
can never corrupt an instance.

Each operation has its own permission (``resume_workflowinstance``, ``retry_workflowinstance``,
``cancel_workflowinstance``, ``upgrade_workflowinstance``, ``rewind_workflowinstance``,
``fork_workflowinstance``, ``pause_workflowinstance`` (pause and unpause), Django's
``delete_workflowinstance``), checked by the view as well
as when showing the button, and its own confirmation page. They act through the configured
runner and storage, exactly as code would, never by editing fields. The confirmation form
carries the revision it was rendered with: the runner refuses (``expected_revision=``) to act
on an instance that changed since, and the operator is asked to look again instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NoReturn

import django
from django import forms
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from hephaestus_django import conf
from hephaestus_django.admin import times
from hephaestus_django.admin.forms import (
    CancelForm,
    PauseForm,
    ResumeForm,
    RevisionForm,
    StepChoiceForm,
    UpgradeForm,
    facts,
    in_order,
    plan_facts,
)
from hephaestus_django.admin.picking import graph, picked, picked_facts
from hephaestus_django.admin.rows import NoStorageForDatabase, decoded, storage_for
from hephaestus_django.core.engine import waits_for_an_event
from hephaestus_django.core.errors import HephaestusError, StaleInstanceError, UpgradeError
from hephaestus_django.core.instance import Instance
from hephaestus_django.core.naming import short_name
from hephaestus_django.core.pause import is_paused, pause_of
from hephaestus_django.core.status import Status
from hephaestus_django.core.upgrades import upgrade, upgrade_target
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.runtime.contract import Storage
from hephaestus_django.runtime.freeing import lock_slots

CANCELLABLE = (Status.PENDING, Status.RUNNING, Status.WAITING)
"""The statuses an instance can be cancelled in (unless it is compensating already)."""

REWINDABLE = (Status.RUNNING, Status.WAITING, Status.COMPLETED, Status.FAILED)
"""The statuses an instance can be rewound in (unless it is compensating, or was compensated)."""

CONFIRM = {"delete": "Yes, delete it", "cancel": "Yes, cancel it"}
"""The confirm button of the operations that cannot be undone (shown as dangerous); the others
are labelled with the operation's name."""

STALE = (
    "Nothing was done: this instance changed since the page was loaded (it was at revision "
    "{seen}, it is now at {now}). Review it below and try again."
)


class Stop(Exception):
    """Leave a view early with ``response`` (a redirect carrying the reason as a message)."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__()
        self.response = response


def stoppable(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Turn a :class:`Stop` raised by ``view`` into its response."""

    @functools.wraps(view)
    def wrapper(self: Any, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(self, request, *args, **kwargs)
        except Stop as stop:
            return stop.response

    return wrapper


class OperationsMixin:
    """The operation views of ``WorkflowInstanceAdmin`` (a ``ModelAdmin``)."""

    operation_template = "admin/hephaestus_django/workflowinstance/operation.html"
    admin_site: Any
    opts: Any
    get_object: Callable[..., Any]
    log_change: Callable[..., Any]
    log_deletions: Callable[..., Any]
    has_delete_permission: Callable[..., bool]
    media: Any

    def has_resume_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.resume_{self.opts.model_name}")

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.retry_{self.opts.model_name}")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.cancel_{self.opts.model_name}")

    def has_upgrade_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.upgrade_{self.opts.model_name}")

    def has_rewind_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.rewind_{self.opts.model_name}")

    def has_fork_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.fork_{self.opts.model_name}")

    def has_pause_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.pause_{self.opts.model_name}")

    def admin_url(self, name: str, *args: Any) -> str:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return reverse(f"{self.admin_site.name}:{info}_{name}", args=args)

    # --- views ----------------------------------------------------------------------------

    @stoppable
    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_resume_permission(request):
            raise PermissionDenied
        row, instance = self._load(request, object_id, "resumed", (Status.WAITING,))
        if not waits_for_an_event(instance):
            self._refuse(
                request,
                row,
                "This instance cannot be resumed: it waits for no event, only for the next "
                "attempt of a failed step, which a worker makes when it is due.",
            )
        form = ResumeForm(instance, request.POST or None, initial={"revision": instance.revision})
        if request.method == "POST":
            self._check_fresh(request, row, instance.revision)
            if form.is_valid():
                step, event = form.cleaned_data["event"]
                return self._act(
                    request,
                    row,
                    "resume",
                    f"Resumed {short_name(step)} with “{event}”",
                    lambda storage: conf.runner.get().resume(
                        row.pk,
                        event,
                        form.cleaned_data["payload"],
                        storage=storage,
                        step=step,
                        expected_revision=form.cleaned_data["revision"],
                    ),
                )
        return self._confirm(request, row, instance, "resume", form)

    @stoppable
    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_retry_permission(request):
            raise PermissionDenied
        row, instance = self._load(request, object_id, "retried", (Status.FAILED,))
        form = RevisionForm(request.POST or None, initial={"revision": instance.revision})
        if request.method == "POST":
            self._check_fresh(request, row, instance.revision)
            if form.is_valid():
                failed = instance.error.step.__name__ if instance.error else "the failed step"
                if instance.compensating:
                    failed = f"the compensation of {failed}"
                return self._act(
                    request,
                    row,
                    "retry",
                    f"Retried {failed}",
                    lambda storage: conf.runner.get().retry(
                        row.pk, storage=storage, expected_revision=form.cleaned_data["revision"]
                    ),
                )
        return self._confirm(request, row, instance, "retry", form)

    @stoppable
    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_cancel_permission(request):
            raise PermissionDenied
        row, instance = self._load(request, object_id, "cancelled", CANCELLABLE)
        if instance.compensating and instance.compensation is not None:
            self._refuse(
                request,
                row,
                "This instance cannot be cancelled: it is compensating its completed steps "
                f"already, and ends {instance.compensation.ends} once they are compensated.",
            )
        form = CancelForm(instance, request.POST or None, initial={"revision": instance.revision})
        if request.method == "POST":
            self._check_fresh(request, row, instance.revision)
            if form.is_valid():
                reason = form.cleaned_data["reason"]
                compensate = form.cleaned_data.get("compensate", False)  # absent: nothing to undo
                done = "Cancelled" + (
                    f", compensating {in_order(form.compensations)}" if compensate else ""
                )
                return self._act(
                    request,
                    row,
                    "cancellation",
                    done + (f" (reason: {reason})" if reason else ""),
                    lambda storage: conf.runner.get().cancel(
                        row.pk,
                        storage=storage,
                        reason=reason,
                        compensate=compensate,
                        expected_revision=form.cleaned_data["revision"],
                    ),
                )
        return self._confirm(request, row, instance, "cancel", form)

    @stoppable
    def upgrade_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Upgrade to the newest version that declares an upgrade from the instance's version.

        The page states the target and what becomes of each of the instance's steps; an
        instance the upgrade does not cover is refused before anything is asked, with the
        reason, and so is a confirmation whose target changed since the page was shown (a
        deploy in between).
        """
        if not self.has_upgrade_permission(request):
            raise PermissionDenied
        row, instance = self._load(request, object_id, "upgraded", tuple(Status))
        target = upgrade_target(instance)
        umbrella = instance.workflow.umbrella()
        if target is None or umbrella is None:
            self._refuse(
                request,
                row,
                f"This instance cannot be upgraded: no newer version of {short_name(row.workflow)} "
                f"declares an upgrade from version {instance.workflow_version}.",
            )
        try:
            upgrade(instance, to=target, now=timezone.now())  # a check: nothing is written
        except UpgradeError as error:
            self._refuse(request, row, f"This instance cannot be upgraded: {error.reason}.")
        form = UpgradeForm(
            request.POST or None,
            initial={"revision": instance.revision, "to_version": target.version},
        )
        if request.method == "POST":
            self._check_fresh(request, row, instance.revision)
            if form.is_valid():
                if form.cleaned_data["to_version"] != target.version:
                    self._refuse(
                        request,
                        row,
                        "Nothing was done: the version to upgrade to changed since the page was "
                        f"loaded (it is now version {target.version}). Review it and try again.",
                    )
                return self._act(
                    request,
                    row,
                    "upgrade",
                    f"Upgraded from version {instance.workflow_version} to {target.version}",
                    lambda storage: conf.runner.get().upgrade(
                        row.pk,
                        storage=storage,
                        to=target,
                        workflow=umbrella,
                        expected_revision=form.cleaned_data["revision"],
                    ),
                )
        return self._confirm(request, row, instance, "upgrade", form)

    @stoppable
    def rewind_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Rewind to a step the operator picks; the page states, for each step offered, what
        rewinding to it forgets and what runs next."""
        if not self.has_rewind_permission(request):
            raise PermissionDenied
        row, instance = self._load(request, object_id, "rewound", REWINDABLE)
        form = StepChoiceForm(
            instance, "rewound", request.POST or None, initial={"revision": instance.revision}
        )
        if not form.plans:
            self._refuse(request, row, "This instance cannot be rewound: no step can be chosen.")
        if request.method == "POST":
            self._check_fresh(request, row, instance.revision)
            if form.is_valid():
                chosen = form.chosen()
                compensate = form.cleaned_data.get("compensate", False)
                done = f"Rewound to {chosen.to.__name__}" + (
                    f", compensating {in_order(chosen.compensations)} first"
                    if compensate and chosen.compensations
                    else ""
                )
                return self._act(
                    request,
                    row,
                    "rewind",
                    done,
                    lambda storage: conf.runner.get().rewind(
                        row.pk,
                        storage=storage,
                        to=chosen.to,
                        compensate=compensate,
                        expected_revision=form.cleaned_data["revision"],
                    ),
                )
        return self._picking(request, row, instance, "rewind", form)

    @stoppable
    def fork_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Fork from a step the operator picks: a new instance, whose page the operator lands
        on; the original is not changed."""
        if not self.has_fork_permission(request):
            raise PermissionDenied
        statuses = tuple(status for status in Status if status is not Status.PENDING)
        row, instance = self._load(request, object_id, "forked", statuses)
        form = StepChoiceForm(
            instance, "forked", request.POST or None, initial={"revision": instance.revision}
        )
        if not form.plans or instance.compensating:
            self._refuse(request, row, "This instance cannot be forked: no step can be chosen.")
        if request.method == "POST":
            self._check_fresh(request, row, instance.revision)
            if form.is_valid():
                chosen = form.chosen()
                try:
                    copy = conf.runner.get().fork(
                        row.pk,
                        storage=storage_for(row._state.db or "default"),
                        at=chosen.to,
                        expected_revision=form.cleaned_data["revision"],
                    )
                except StaleInstanceError as error:
                    self._refuse(request, row, STALE.format(seen=error.revision, now="a newer one"))
                except (HephaestusError, NoStorageForDatabase) as error:
                    self._refuse(request, row, f"The fork was refused: {error}")
                done = f"Forked at {chosen.to.__name__} as {copy.id}"
                self.log_change(request, row, done)
                level, text = outcome(done, copy)
                messages.add_message(request, level, text)
                return HttpResponseRedirect(self.admin_url("change", copy.id))
        return self._picking(request, row, instance, "fork", form)

    @stoppable
    def pause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Pause: nothing of the instance runs until it is unpaused."""
        if not self.has_pause_permission(request):
            raise PermissionDenied
        row, instance = self._load(request, object_id, "paused", CANCELLABLE)
        if is_paused(instance):
            self._refuse(request, row, "This instance is paused already.")
        form = PauseForm(request.POST or None, initial={"revision": instance.revision})
        if request.method == "POST":
            self._check_fresh(request, row, instance.revision)
            if form.is_valid():
                reason = form.cleaned_data["reason"] or None
                return self._act(
                    request,
                    row,
                    "pause",
                    "Paused" + (f" (reason: {reason})" if reason else ""),
                    lambda storage: conf.runner.get().pause(
                        row.pk,
                        storage=storage,
                        reason=reason,
                        expected_revision=form.cleaned_data["revision"],
                    ),
                )
        return self._confirm(request, row, instance, "pause", form)

    @stoppable
    def unpause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Unpause: what waited runs on."""
        if not self.has_pause_permission(request):
            raise PermissionDenied
        row, instance = self._load(request, object_id, "unpaused", tuple(Status))
        if not is_paused(instance):
            self._refuse(request, row, "This instance is not paused.")
        form = RevisionForm(request.POST or None, initial={"revision": instance.revision})
        if request.method == "POST":
            self._check_fresh(request, row, instance.revision)
            if form.is_valid():
                return self._act(
                    request,
                    row,
                    "unpause",
                    "Unpaused",
                    lambda storage: conf.runner.get().unpause(
                        row.pk, storage=storage, expected_revision=form.cleaned_data["revision"]
                    ),
                )
        held = pause_of(instance) or {}
        stated = [
            ("paused at", held.get("at", "?")),
            ("reason", held.get("reason") or "(none given)"),
            ("by", "its workflow's hold (pause_all)" if held.get("workflow") else "an operator"),
        ]
        return self._confirm(request, row, instance, "unpause", form, stated)

    @stoppable
    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Delete through the storage; rows that do not decode can be deleted too."""
        row = self._row(request, object_id)
        if not self.has_delete_permission(request, row):
            raise PermissionDenied
        form = RevisionForm(request.POST or None, initial={"revision": row.revision})
        if request.method == "POST" and form.is_valid():
            return self._delete(request, row, form.cleaned_data["revision"])
        return self._confirm(request, row, decoded(row)[0], "delete", form)

    # --- helpers ---------------------------------------------------------------------------

    def _row(self, request: HttpRequest, object_id: str) -> WorkflowInstance:
        row = self.get_object(request, unquote(object_id))
        if row is None:
            messages.error(
                request, f"There is no workflow instance {object_id}; perhaps it was deleted."
            )
            raise Stop(HttpResponseRedirect(self.admin_url("changelist")))
        return row  # type: ignore[no-any-return]

    def _load(
        self, request: HttpRequest, object_id: str, verb: str, statuses: tuple[Status, ...]
    ) -> tuple[WorkflowInstance, Instance]:
        """The row and its instance, which must be in one of ``statuses``; else Stop with the
        reason."""
        row = self._row(request, object_id)
        instance, problem = decoded(row)
        if instance is None:
            self._refuse(request, row, f"This instance cannot be {verb}: {problem}")
        elif instance.status not in statuses:
            allowed = ", ".join(statuses[:-1]) + (" or " if len(statuses) > 1 else "")
            self._refuse(
                request,
                row,
                f"This instance cannot be {verb}: it is {instance.status}, "
                f"and only a {allowed}{statuses[-1]} instance can be.",
            )
        assert instance is not None
        return row, instance

    def _refuse(self, request: HttpRequest, row: WorkflowInstance, message: str) -> NoReturn:
        messages.error(request, message)
        raise Stop(HttpResponseRedirect(self.admin_url("change", row.pk)))

    def _check_fresh(self, request: HttpRequest, row: WorkflowInstance, revision: int) -> None:
        seen = request.POST.get("revision", "")
        if seen != str(revision):
            self._refuse(request, row, STALE.format(seen=seen or "?", now=revision))

    def _act(
        self,
        request: HttpRequest,
        row: WorkflowInstance,
        name: str,
        done: str,
        operation: Callable[[Storage], Instance],
    ) -> HttpResponse:
        """Run ``operation`` on the row's storage and report how it went."""
        try:
            result = operation(storage_for(row._state.db or "default"))
        except StaleInstanceError as error:
            messages.error(request, STALE.format(seen=error.revision, now="a newer one"))
        except (HephaestusError, NoStorageForDatabase) as error:
            messages.error(request, f"The {name} was refused: {error}")
        else:
            self.log_change(request, row, done)
            level, text = outcome(done, result)
            messages.add_message(request, level, text)
        return HttpResponseRedirect(self.admin_url("change", row.pk))

    def _delete(self, request: HttpRequest, row: WorkflowInstance, seen: int) -> HttpResponse:
        database = row._state.db or "default"
        try:
            storage = storage_for(database)
        except NoStorageForDatabase as error:
            self._refuse(request, row, f"The delete was refused: {error}")
        with transaction.atomic(using=database):
            # The locks of its concurrency limits first, as every release takes them (their
            # slots go to the next in line with the delete); then the row, so it cannot change
            # between this check and the delete.
            lock_slots(storage, row.pk)
            rows = WorkflowInstance.objects.using(database).filter(pk=row.pk)
            current = rows.select_for_update().values_list("revision", flat=True).first()
            if current is None:
                messages.warning(request, f"{row} was already deleted.")
                return HttpResponseRedirect(self.admin_url("changelist"))
            if current != seen:
                self._refuse(request, row, STALE.format(seen=seen, now=current))
            self.log_deletions(request, rows)
            conf.runner.get().delete(row.pk, storage=storage)
        messages.success(request, f"Deleted {row}.")
        return HttpResponseRedirect(self.admin_url("changelist"))

    def _picking(
        self,
        request: HttpRequest,
        row: WorkflowInstance,
        instance: Instance,
        operation: str,
        form: StepChoiceForm,
    ) -> HttpResponse:
        """The Rewind or Fork page: the graph whose boxes pick the step (``?step=``), and, for
        the step picked, what the dry run says it forgets, above what each step would."""
        verb = "rewound" if operation == "rewind" else "forked"
        chosen = picked(request, form.plans)
        stated = plan_facts(form.plans)
        if chosen is not None:
            if not form.is_bound:
                form.initial["step"] = chosen.to.path()
            try:
                storage: Storage | None = storage_for(row._state.db or "default")
            except NoStorageForDatabase:
                storage = None
            stated = [*picked_facts(chosen, storage, verb, instance), *stated]
        extra = {"graph": graph(instance, form.plans, chosen), "picked": chosen}
        return self._confirm(request, row, instance, operation, form, stated, extra)

    def _confirm(
        self,
        request: HttpRequest,
        row: WorkflowInstance,
        instance: Instance | None,
        operation: str,
        form: forms.Form,
        stated: list[tuple[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {
            **(extra or {}),
            **self.admin_site.each_context(request),
            **page_context(self.opts, row),
            "title": f"{operation.capitalize()} {short_name(row.workflow)} {row.pk}?",
            "operation": operation,
            "instance": instance,
            "facts": facts(operation, row, instance) if stated is None else stated,
            "form": form,
            "confirm_label": CONFIRM.get(operation, operation.capitalize()),
            "dangerous": operation in CONFIRM,
            "media": self.media + form.media,
            "detail_url": self.admin_url("change", row.pk),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.operation_template, context)


def outcome(done: str, result: Instance) -> tuple[int, str]:
    """The message level and text after an operation: where the instance is now, and a warning
    when a step (or a compensation) failed in what the runner went on to run."""
    what = "the compensation of " if result.compensating else ""
    error = result.error
    if result.status is Status.FAILED and error is not None:
        return messages.WARNING, (
            f"{done}; then {what}{error.step.__name__} failed with "
            f"{error.error_type}: {error.message}"
        )
    compensation = result.compensation
    if result.compensating and compensation is not None:
        step = compensation.pending[0]
        waiting = result.waiting_steps.get(step)
        if waiting is not None and waiting.attempt is not None and waiting.resume_at:
            return messages.WARNING, (
                f"{done}; then the compensation of {step.__name__} failed, and attempt "
                f"{waiting.attempt} is due at {times.as_text(waiting.resume_at)}."
            )
    now = f"{result.status}, compensating" if result.compensating else str(result.status)
    return messages.SUCCESS, f"{done}; the instance is now {now}."


def page_context(opts: Any, row: WorkflowInstance) -> dict[str, Any]:
    """What every page about one instance needs: the model's options, the row, breadcrumbs style."""
    return {
        "opts": opts,
        "original": row,
        "row": row,
        "has_view_permission": True,
        "breadcrumbs_as_list": django.VERSION >= (6, 0),  # Django 6 styles <ol>, 5.2 <div>
    }
