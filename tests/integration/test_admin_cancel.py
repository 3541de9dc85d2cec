"""Cancel in the admin, and cancelled or compensating instances wherever the admin shows them.

The operation end to end (permission, confirmation, reason, compensation on ``LocalRunner``,
stale pages, refusals as messages, never a server error), then the list's badges, filter and
step chips, and the instance page's cancellation, compensation and history.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.test import Client
from django.urls import reverse

from hephaestus_django import (
    Instance,
    InstanceNotCancellableError,
    SerializationError,
    StaleInstanceError,
    Status,
)
from hephaestus_django.admin.limits import REASON_MAX_CHARS
from hephaestus_django.core import engine
from hephaestus_django.storage import DjangoStorage
from tests import flows
from tests.support.admin import messages_of, reloaded, section, shown, url
from tests.support.instances import stored

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture(autouse=True)
def _fresh_compensations() -> Iterator[None]:
    flows.UNDONE.clear()
    flows.BROKEN_UNDO.clear()
    yield
    flows.UNDONE.clear()
    flows.BROKEN_UNDO.clear()


def saga(storage: DjangoStorage) -> Instance:
    """A Saga that held, mailed and billed, and now waits for its shipment."""
    instance = stored(storage, flows.Saga)
    assert instance.status is Status.WAITING
    return instance


def failed_saga(storage: DjangoStorage) -> Instance:
    """A FailingSaga whose Bill failed, and whose Hold was compensated since."""
    fresh = engine.new_instance(flows.FailingSaga, {"script": {"bill": "fail"}})
    instance = flows.run_to_rest(engine.start(fresh))
    storage.put(instance)
    return storage.get(instance.id)


def compensating(storage: DjangoStorage) -> Instance:
    """A Saga cancelled with compensation whose compensations have not run yet."""
    instance = saga(storage)
    cancelled = engine.cancel(instance, now=datetime.now(UTC), reason="stop", compensate=True)
    storage.put(cancelled)
    return storage.get(instance.id)


def listed(client: Client, **params: str) -> str:
    response = client.get(reverse("admin:hephaestus_django_workflowinstance_changelist"), params)
    assert response.status_code == 200
    return response.content.decode()


def row_of(page: str, instance_id: object) -> str:
    (row,) = [row for row in page.split("<tr") if str(instance_id) in row]
    return row


# --- the confirmation page ----------------------------------------------------------------------


def test_the_cancel_page_says_what_stops_and_what_would_be_compensated(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = saga(storage)
    response = admin_client.get(url("cancel", instance.id))
    assert response.status_code == 200
    page = response.content.decode()
    assert f'name="revision" value="{instance.revision}"' in page
    assert 'id="id_reason"' in page
    assert f'maxlength="{REASON_MAX_CHARS}"' in page
    assert 'type="checkbox" name="compensate"' in page
    assert "Runs the compensate() of Bill, then Hold, in this order" in page
    assert "<td>Bill, then Hold</td>" in page  # compensated if you tick the box, in order
    assert "<td>Mail</td>" in page  # completed without compensate(): never undone
    assert "Shipment: stops waiting; its timers are dropped" in page
    assert 'value="Yes, cancel it" class="hx-danger"' in page
    assert 'method="post"' in page
    assert "csrfmiddlewaretoken" in page
    assert reloaded(instance).revision == instance.revision  # showing the page changes nothing


def test_without_a_compensable_step_there_is_no_checkbox(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = stored(storage, flows.TwoWaits)
    page = admin_client.get(url("cancel", instance.id)).content.decode()
    assert 'name="compensate"' not in page
    assert "compensated if you tick the box" not in page
    response = admin_client.post(
        url("cancel", instance.id), {"revision": instance.revision, "compensate": "on"}
    )
    assert messages_of(response) == [("success", "Cancelled; the instance is now cancelled.")]
    after = reloaded(instance)
    assert after.cancellation is not None
    assert not after.cancellation.compensate  # a forged field is ignored


# --- cancelling ---------------------------------------------------------------------------------


def test_cancel_keeps_the_reason_and_compensates_nothing_unasked(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = saga(storage)
    response = admin_client.post(
        url("cancel", instance.id),
        {"revision": instance.revision, "reason": "  customer called  "},
    )
    assert response.status_code == 302
    assert response["Location"] == url("change", instance.id)
    assert messages_of(response) == [
        ("success", "Cancelled (reason: customer called); the instance is now cancelled.")
    ]
    after = reloaded(instance)
    assert after.status is Status.CANCELLED
    assert after.cancellation is not None
    assert (after.cancellation.reason, after.cancellation.steps) == (
        "customer called",
        (flows.Shipment,),
    )
    assert after.compensation is None
    assert flows.undone(instance.id) == []
    entry = LogEntry.objects.get(object_id=str(instance.id))
    assert (entry.action_flag, entry.change_message) == (
        CHANGE,
        "Cancelled (reason: customer called)",
    )


def test_an_empty_reason_is_no_reason(admin_client: Client, storage: DjangoStorage) -> None:
    instance = saga(storage)
    admin_client.post(url("cancel", instance.id), {"revision": instance.revision, "reason": " "})
    cancellation = reloaded(instance).cancellation
    assert cancellation is not None
    assert cancellation.reason is None


def test_cancel_with_compensation_runs_them_on_the_local_runner(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = saga(storage)
    response = admin_client.post(
        url("cancel", instance.id),
        {"revision": instance.revision, "reason": "out of stock", "compensate": "on"},
    )
    assert messages_of(response) == [
        (
            "success",
            "Cancelled, compensating Bill, then Hold (reason: out of stock); the instance is "
            "now cancelled.",
        )
    ]
    assert flows.undone(instance.id) == ["bill", "hold"]
    after = reloaded(instance)
    assert after.status is Status.CANCELLED
    assert after.compensation is not None
    assert after.compensation.done
    assert [(e.step, e.event) for e in after.execution_history if e.compensating] == [
        (flows.Bill, "compensated"),
        (flows.Hold, "compensated"),
    ]


def test_a_compensation_that_fails_is_a_warning_and_retry_resumes_the_compensations(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = saga(storage)
    flows.BROKEN_UNDO.add("bill")
    response = admin_client.post(
        url("cancel", instance.id), {"revision": instance.revision, "compensate": "on"}
    )
    assert messages_of(response) == [
        (
            "warning",
            "Cancelled, compensating Bill, then Hold; then the compensation of Bill failed "
            "with tests.flows.StepFailed: bill could not be undone",
        )
    ]
    failed = reloaded(instance)
    assert failed.status is Status.FAILED
    assert failed.compensating
    page = shown(admin_client, instance.id)
    assert 'id="hx-retry"' in page
    assert 'id="hx-cancel"' not in page
    assert "its compensation failed (see above); retry runs it again, then the rest" in page

    flows.BROKEN_UNDO.clear()
    response = admin_client.post(url("retry", instance.id), {"revision": failed.revision})
    assert messages_of(response) == [
        ("success", "Retried the compensation of Bill; the instance is now cancelled.")
    ]
    assert flows.undone(instance.id) == ["bill", "hold"]


# --- refusals -----------------------------------------------------------------------------------


def test_cancel_refuses_a_stale_page(admin_client: Client, storage: DjangoStorage) -> None:
    instance = saga(storage)
    response = admin_client.post(
        url("cancel", instance.id), {"revision": instance.revision - 1, "compensate": "on"}
    )
    ((level, text),) = messages_of(response)
    assert level == "error"
    assert text.startswith("Nothing was done: this instance changed since the page was loaded")
    assert reloaded(instance) == instance
    assert flows.undone(instance.id) == []


@pytest.mark.parametrize(
    "error",
    [
        StaleInstanceError("00000000-0000-0000-0000-000000000000", 3),
        InstanceNotCancellableError("instance x is completed; nothing was changed"),
        SerializationError("cancellation.reason", "it contains U+0000"),
    ],
    ids=["stale", "not-cancellable", "serialization"],
)
def test_what_the_runner_refuses_is_a_message(
    admin_client: Client,
    storage: DjangoStorage,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    instance = saga(storage)

    class Refusing:
        """A runner that refuses at the last moment (a race the page could not see)."""

        def cancel(self, instance_id: Any, **kwargs: Any) -> Any:
            raise error

    monkeypatch.setattr("hephaestus_django.conf.runner.get", Refusing)
    response = admin_client.post(url("cancel", instance.id), {"revision": instance.revision})
    assert response.status_code == 302
    ((level, text),) = messages_of(response)
    assert level == "error"
    if isinstance(error, StaleInstanceError):
        assert "changed since the page was loaded" in text
    else:
        assert text == f"The cancellation was refused: {error}"
    assert reloaded(instance).revision == instance.revision


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda storage: stored(storage),
            "This instance cannot be cancelled: it is completed, and only a pending, running "
            "or waiting instance can be.",
        ),
        (
            lambda storage: stored(storage, flows.IfElse, script={"check": "fail"}),
            "This instance cannot be cancelled: it is failed, and only a pending, running or "
            "waiting instance can be.",
        ),
        (
            compensating,
            "This instance cannot be cancelled: it is compensating its completed steps already, "
            "and ends cancelled once they are compensated.",
        ),
    ],
    ids=["completed", "failed", "compensating"],
)
def test_an_instance_that_cannot_be_cancelled_is_refused_with_a_message(
    admin_client: Client,
    storage: DjangoStorage,
    make: Callable[[DjangoStorage], Instance],
    message: str,
) -> None:
    instance = make(storage)
    for response in (
        admin_client.get(url("cancel", instance.id)),
        admin_client.post(url("cancel", instance.id), {"revision": instance.revision}),
    ):
        assert response.status_code == 302
        assert response["Location"] == url("change", instance.id)
        assert messages_of(response)[-1] == ("error", message)  # after the GET's, unread
    assert reloaded(instance).revision == instance.revision
    assert 'id="hx-cancel"' not in shown(admin_client, instance.id)


def test_a_cancelled_instance_cannot_be_cancelled_again(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = saga(storage)
    admin_client.post(url("cancel", instance.id), {"revision": instance.revision})
    response = admin_client.get(url("cancel", instance.id))
    assert messages_of(response)[-1] == (
        "error",
        "This instance cannot be cancelled: it is cancelled, and only a pending, running or "
        "waiting instance can be.",
    )


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        ("stop \x00 now", "Null characters are not allowed."),
        (
            "x" * (REASON_MAX_CHARS + 1),
            f"Ensure this value has at most {REASON_MAX_CHARS} characters",
        ),
    ],
    ids=["nul", "too-long"],
)
def test_a_bad_reason_is_a_form_error(
    admin_client: Client, storage: DjangoStorage, reason: str, error: str
) -> None:
    instance = saga(storage)
    response = admin_client.post(
        url("cancel", instance.id),
        {"revision": instance.revision, "reason": reason, "compensate": "on"},
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert 'class="errorlist' in page
    assert error in page
    assert reloaded(instance) == instance
    assert flows.undone(instance.id) == []


def test_cancel_needs_its_permission(
    staff_client: Callable[..., Client], storage: DjangoStorage
) -> None:
    instance = saga(storage)
    viewer = staff_client("view_workflowinstance", "resume_workflowinstance")
    assert 'id="hx-cancel"' not in shown(viewer, instance.id)
    assert viewer.get(url("cancel", instance.id)).status_code == 403
    assert viewer.post(url("cancel", instance.id), {"revision": instance.revision}).status_code == (
        403
    )
    assert reloaded(instance).revision == instance.revision
    viewer.logout()
    operator = staff_client("view_workflowinstance", "cancel_workflowinstance")
    assert 'id="hx-cancel"' in shown(operator, instance.id)
    assert operator.post(
        url("cancel", instance.id), {"revision": instance.revision}
    ).status_code == (302)
    assert reloaded(instance).status is Status.CANCELLED


def test_cancel_needs_the_csrf_token(admin_user: Any, storage: DjangoStorage) -> None:
    instance = saga(storage)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post(url("cancel", instance.id), {"revision": instance.revision})
    assert response.status_code == 403
    assert reloaded(instance).revision == instance.revision


# --- the list -----------------------------------------------------------------------------------


def test_the_list_shows_cancelled_and_compensating_instances(
    admin_client: Client, storage: DjangoStorage
) -> None:
    cancelled = saga(storage)
    storage.put(engine.cancel(cancelled, now=datetime.now(UTC), reason="stop"))
    undoing = compensating(storage)
    failed = failed_saga(storage)
    waiting = saga(storage)
    page = listed(admin_client)
    row = row_of(page, cancelled.id)
    assert '<span class="hx-badge hx-status-cancelled">cancelled</span>' in row
    assert re.search(
        r'<span class="hx-step hx-step-cancelled" title="tests.flows.Shipment — cancelled at">'
        r"Shipment</span>",
        row,
    )
    row = row_of(page, undoing.id)
    assert '<span class="hx-badge hx-status-running">running</span>' in row
    assert (
        'class="hx-step hx-step-compensating" title="tests.flows.Bill — compensating (running)"'
        in row
    )
    # Failed where the step failed, not at the last step its compensations undid.
    assert re.search(
        r'hx-step-failed" title="tests.flows.Bill — failed at">Bill<', row_of(page, failed.id)
    )
    filtered = listed(admin_client, status__exact="cancelled")
    assert 'href="?status__exact=cancelled"' in filtered
    assert str(cancelled.id) in filtered
    assert str(waiting.id) not in filtered


# --- the instance page --------------------------------------------------------------------------


def test_a_cancelled_instance_shows_its_cancellation(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = saga(storage)
    admin_client.post(url("cancel", instance.id), {"revision": instance.revision, "reason": SCRIPT})
    page = shown(admin_client, instance.id)
    assert '<span class="hx-badge hx-status-cancelled">cancelled</span>' in page
    note = page[page.index('id="hx-cancellation"') : page.index('<div class="hx-grid">')]
    assert "<strong>Cancelled</strong> at <time" in note
    assert re.search(r"while at <span title=\"tests.flows.Shipment\">Shipment</span>", note)
    assert f"Reason:<pre>{ESCAPED}</pre>" in note
    assert "Its completed steps were not compensated." in note
    assert SCRIPT not in page
    assert 'id="hx-compensation"' not in page
    steps = section(page, "steps")
    assert re.search(r'cancelled at</th><td>\s*<span class="hx-step hx-step-cancelled"', steps)
    for button in ("resume", "retry", "cancel"):
        assert f'id="hx-{button}"' not in page
    graph = section(page, "graph")
    assert 'class="hx-node hx-state-cancelled" data-step="tests.flows.Shipment"' in graph


def test_a_compensated_cancellation_lists_what_was_undone(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = saga(storage)
    admin_client.post(
        url("cancel", instance.id), {"revision": instance.revision, "compensate": "on"}
    )
    page = shown(admin_client, instance.id)
    assert "No reason was given." in page
    note = section(page, "compensation")
    assert "<strong>Compensated</strong> since" in note
    assert re.search(
        r">Bill</span>, then <span[^>]*>Hold</span>; the instance ended cancelled", note
    )
    history = section(page, "history")
    assert history.count('<tr class="hx-compensation-row">') == 2
    assert '<span class="hx-badge hx-compensation-badge">compensated</span>' in history
    graph = section(page, "graph")
    assert 'class="hx-node hx-state-compensated" data-step="tests.flows.Bill"' in graph
    assert 'class="hx-node hx-state-completed" data-step="tests.flows.Mail"' in graph


def test_a_compensation_in_progress_shows_the_step_now_and_the_ones_left(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = compensating(storage)
    page = shown(admin_client, instance.id)
    note = section(page, "compensation")
    assert "<strong>Compensating</strong> since" in note
    assert "after being cancelled; it ends cancelled once every step below is compensated" in note
    assert re.search(r">Bill</span>: its compensate\(\) runs now</li>", note)
    assert re.search(r">Hold</span>: to be compensated next</li>", note)
    steps = section(page, "steps")
    assert re.search(r'running</th><td>\s*<span class="hx-step hx-step-compensating"', steps)
    assert 'class="hx-node hx-state-compensating" data-step="tests.flows.Bill"' in section(
        page, "graph"
    )
    assert 'id="hx-cancel"' not in page


def test_a_failure_that_was_compensated(admin_client: Client, storage: DjangoStorage) -> None:
    instance = failed_saga(storage)
    assert flows.undone(instance.id) == ["hold"]
    page = shown(admin_client, instance.id)
    note = section(page, "compensation")
    assert "the instance ended failed" in note
    assert 'Started by the failure of <span title="tests.flows.Bill">Bill</span>' in note
    assert "bill was told to fail" in note
    history = section(page, "history")
    assert '<span class="hx-badge hx-status-failed">failed</span>' in history
    assert "<td>compensations started</td>" in history
    assert history.count('class="hx-compensation-row"') == 2
    # Every step was compensated: a retry would be refused, so there is no button for it.
    assert 'id="hx-retry"' not in page
    assert 'id="hx-cancel"' not in page
    graph = section(page, "graph")
    assert 'class="hx-node hx-state-failed" data-step="tests.flows.Bill"' in graph
    assert 'class="hx-node hx-state-compensated" data-step="tests.flows.Hold"' in graph
