"""Resume, retry and delete in the admin: permissions, confirmation, stale pages, the storage."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.db import connection
from django.test import Client
from django.urls import reverse

from hephaestus_django import Context, Done, Instance, StaleInstanceError, Status, Step, Workflow
from hephaestus_django.admin.rows import NoStorageForDatabase, storage_for
from hephaestus_django.conf import storages
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.storage import DjangoStorage
from tests import flows
from tests.support.admin import messages_of, reloaded, url
from tests.support.instances import stored

pytestmark = pytest.mark.django_db

FLAKY = {"fail": True}


class Flaky(Step):
    """Fails while ``FLAKY["fail"]`` is set, so a retry can succeed."""

    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        if FLAKY["fail"]:
            raise RuntimeError("the <b>warehouse</b> is down")
        return "ok"


class FlakyFlow(Workflow):
    start = Flaky
    transitions = {Flaky: {"ok": Done}}


@pytest.fixture(autouse=True)
def flaky() -> Iterator[dict[str, bool]]:
    FLAKY["fail"] = True
    yield FLAKY
    FLAKY["fail"] = True


def choice(step: type[Step], event: str) -> str:
    return json.dumps([step.path(), event])


# --- resume -----------------------------------------------------------------------------------


def test_the_resume_page_offers_the_waiting_steps_events(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = stored(storage, flows.TwoWaits)
    response = admin_client.get(url("resume", instance.id))
    page = response.content.decode()
    assert response.status_code == 200
    assert f'name="revision" value="{instance.revision}"' in page
    groups = re.findall(r'<optgroup label="([^"]+)">(.*?)</optgroup>', page, re.DOTALL)
    assert [(label, re.findall(r">([^<]+)</option>", options)) for label, options in groups] == [
        ("Signature (waiting)", ["Signature: signed", "Signature: declined"]),
        ("Payment (waiting)", ["Payment: paid"]),
    ]
    assert 'id="id_payload"' in page
    assert "Signature is waiting" in page


def test_resume_with_a_payload(admin_client: Client, storage: DjangoStorage) -> None:
    instance = stored(storage, flows.TwoWaits)
    response = admin_client.post(
        url("resume", instance.id),
        {
            "revision": instance.revision,
            "event": choice(flows.Signature, "signed"),
            "payload": '{"by": "Ada", "at": [1, 2.5, null]}',
        },
    )
    assert response.status_code == 302
    assert response["Location"] == url("change", instance.id)
    assert messages_of(response) == [
        ("success", "Resumed Signature with “signed”; the instance is now waiting.")
    ]
    after = reloaded(instance)
    assert after.context.result(flows.Signature) == {"by": "Ada", "at": [1, 2.5, None]}
    assert after.revision > instance.revision
    assert set(after.waiting_steps) == {flows.Payment}
    entry = LogEntry.objects.get(object_id=str(instance.id))
    assert entry.action_flag == CHANGE
    assert entry.change_message == "Resumed Signature with “signed”"
    history = admin_client.get(url("history", instance.id)).content.decode()
    assert "Resumed Signature with “signed”" in history


def test_resume_runs_what_follows(admin_client: Client, storage: DjangoStorage) -> None:
    instance = stored(storage, flows.TwoWaits)
    admin_client.post(
        url("resume", instance.id),
        {"revision": instance.revision, "event": choice(flows.Signature, "declined")},
    )
    now = reloaded(instance)
    response = admin_client.post(
        url("resume", instance.id),
        {"revision": now.revision, "event": choice(flows.Payment, "paid"), "payload": ""},
    )
    assert messages_of(response)[-1] == (
        "success",
        "Resumed Payment with “paid”; the instance is now completed.",
    )
    done = reloaded(instance)
    assert done.status is Status.COMPLETED
    assert done.context.result(flows.Payment) is None  # an empty payload is no data


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ("{not json", "This is not valid JSON: Expecting property name"),
        ("[1, NaN]", "This is not valid JSON: NaN is not a JSON value that can be stored"),
        ('"\\u0000"', "cannot store payload"),
    ],
)
def test_an_invalid_payload_is_a_form_error(
    admin_client: Client, storage: DjangoStorage, payload: str, error: str
) -> None:
    instance = stored(storage, flows.TwoWaits)
    response = admin_client.post(
        url("resume", instance.id),
        {"revision": instance.revision, "event": choice(flows.Payment, "paid"), "payload": payload},
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert error in page
    assert 'class="errorlist' in page
    assert reloaded(instance).revision == instance.revision


def test_an_event_the_step_does_not_declare_is_refused(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = stored(storage, flows.TwoWaits)
    response = admin_client.post(
        url("resume", instance.id),
        {"revision": instance.revision, "event": choice(flows.Payment, "refunded")},
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert reloaded(instance).revision == instance.revision


def test_resume_refuses_a_stale_page(admin_client: Client, storage: DjangoStorage) -> None:
    instance = stored(storage, flows.TwoWaits)
    page = admin_client.get(url("resume", instance.id)).content.decode()
    seen = re.search(r'name="revision" value="(\d+)"', page).group(1)  # type: ignore[union-attr]
    # Meanwhile, someone else resumes the other step.
    admin_client.post(
        url("resume", instance.id),
        {"revision": seen, "event": choice(flows.Payment, "paid")},
    )
    changed = reloaded(instance)
    response = admin_client.post(
        url("resume", instance.id),
        {"revision": seen, "event": choice(flows.Signature, "signed")},
    )
    assert response.status_code == 302
    level, text = messages_of(response)[-1]  # after the other resume's success message
    assert level == "error"
    assert text.startswith("Nothing was done: this instance changed since the page was loaded")
    assert f"revision {seen}, it is now at {changed.revision}" in text
    assert reloaded(instance) == changed


def test_a_stale_write_caught_by_the_runner_is_reported(
    admin_client: Client, storage: DjangoStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = stored(storage, flows.TwoWaits)

    class Racing:
        """A runner that lost the race: the instance changed between the check and the write."""

        def resume(self, instance_id: Any, *args: Any, expected_revision: int, **kw: Any) -> Any:
            raise StaleInstanceError(instance_id, expected_revision)

    monkeypatch.setattr("hephaestus_django.conf.runner.get", Racing)
    response = admin_client.post(
        url("resume", instance.id),
        {"revision": instance.revision, "event": choice(flows.Payment, "paid")},
    )
    ((level, text),) = messages_of(response)
    assert level == "error"
    assert "changed since the page was loaded" in text


def test_only_a_waiting_instance_can_be_resumed(
    admin_client: Client, storage: DjangoStorage
) -> None:
    done = stored(storage)
    response = admin_client.get(url("resume", done.id))
    assert response.status_code == 302
    assert messages_of(response) == [
        (
            "error",
            "This instance cannot be resumed: it is completed, and only a waiting instance can be.",
        )
    ]


def test_an_undecodable_instance_cannot_be_resumed(admin_client: Client) -> None:
    row_id = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO workflow_instances (id, workflow, status, state) "
            "VALUES (%s, 'shop.flows.Retired', 'waiting', '{}'::jsonb)",
            [row_id],
        )
    response = admin_client.post(url("resume", row_id), {"revision": 1})
    ((level, text),) = messages_of(response)
    assert level == "error"
    assert text.startswith("This instance cannot be resumed: no workflow is registered")


def test_resume_needs_its_permission(
    staff_client: Callable[..., Client], storage: DjangoStorage
) -> None:
    instance = stored(storage, flows.TwoWaits)
    viewer = staff_client("view_workflowinstance")
    data = {"revision": instance.revision, "event": choice(flows.Payment, "paid")}
    assert viewer.get(url("resume", instance.id)).status_code == 403
    assert viewer.post(url("resume", instance.id), data).status_code == 403
    assert reloaded(instance).revision == instance.revision
    viewer.logout()
    operator = staff_client("view_workflowinstance", "resume_workflowinstance")
    assert operator.post(url("resume", instance.id), data).status_code == 302
    assert reloaded(instance).revision > instance.revision


def test_an_unknown_instance_redirects_to_the_list(admin_client: Client) -> None:
    missing = uuid.uuid4()
    response = admin_client.get(url("resume", missing))
    assert response["Location"] == reverse("admin:hephaestus_django_workflowinstance_changelist")
    assert messages_of(response) == [
        ("error", f"There is no workflow instance {missing}; perhaps it was deleted.")
    ]


# --- retry ------------------------------------------------------------------------------------


def test_retry_reruns_the_failed_step(admin_client: Client, storage: DjangoStorage) -> None:
    instance = stored(storage, FlakyFlow)
    assert instance.status is Status.FAILED
    page = admin_client.get(url("retry", instance.id)).content.decode()
    assert "RuntimeError: the &lt;b&gt;warehouse&lt;/b&gt; is down" in page
    FLAKY["fail"] = False
    response = admin_client.post(url("retry", instance.id), {"revision": instance.revision})
    assert messages_of(response) == [("success", "Retried Flaky; the instance is now completed.")]
    assert reloaded(instance).status is Status.COMPLETED
    assert LogEntry.objects.get(object_id=str(instance.id)).change_message == "Retried Flaky"


def test_a_retry_that_fails_again_is_a_warning(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = stored(storage, FlakyFlow)
    response = admin_client.post(url("retry", instance.id), {"revision": instance.revision})
    assert messages_of(response) == [
        (
            "warning",
            "Retried Flaky; then Flaky failed with RuntimeError: the <b>warehouse</b> is down",
        )
    ]
    page = admin_client.get(url("change", instance.id)).content.decode()
    assert "the &lt;b&gt;warehouse&lt;/b&gt; is down" in page  # the message, escaped
    assert "<b>warehouse</b>" not in page


def test_retry_refuses_a_stale_page(admin_client: Client, storage: DjangoStorage) -> None:
    instance = stored(storage, FlakyFlow)
    response = admin_client.post(url("retry", instance.id), {"revision": instance.revision - 1})
    assert messages_of(response)[0][0] == "error"
    assert reloaded(instance).revision == instance.revision


def test_only_a_failed_instance_can_be_retried(
    admin_client: Client, storage: DjangoStorage
) -> None:
    waiting = stored(storage, flows.TwoWaits)
    response = admin_client.post(url("retry", waiting.id), {"revision": waiting.revision})
    assert messages_of(response) == [
        (
            "error",
            "This instance cannot be retried: it is waiting, and only a failed instance can be.",
        )
    ]


def test_retry_needs_its_permission(
    staff_client: Callable[..., Client], storage: DjangoStorage
) -> None:
    instance = stored(storage, FlakyFlow)
    client = staff_client("view_workflowinstance", "resume_workflowinstance")
    assert client.get(url("retry", instance.id)).status_code == 403
    assert (
        client.post(url("retry", instance.id), {"revision": instance.revision}).status_code == 403
    )


# --- delete -----------------------------------------------------------------------------------


@pytest.fixture
def deletions(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The ids ``DjangoStorage.delete`` was called with (it still deletes)."""
    calls: list[Any] = []
    original = DjangoStorage.delete

    def spy(self: DjangoStorage, instance_id: Any) -> None:
        calls.append(instance_id)
        original(self, instance_id)

    monkeypatch.setattr(DjangoStorage, "delete", spy)
    return calls


def test_delete_goes_through_the_storage(
    admin_client: Client, storage: DjangoStorage, deletions: list[Any]
) -> None:
    instance = stored(storage, flows.TwoWaits)
    page = admin_client.get(url("delete", instance.id)).content.decode()
    assert "Delete this instance permanently" in page
    assert 'value="Yes, delete it"' in page
    response = admin_client.post(url("delete", instance.id), {"revision": instance.revision})
    assert response["Location"] == reverse("admin:hephaestus_django_workflowinstance_changelist")
    assert messages_of(response) == [("success", f"Deleted TwoWaits {instance.id} (waiting).")]
    assert deletions == [instance.id]
    assert not WorkflowInstance.objects.filter(pk=instance.id).exists()
    assert LogEntry.objects.get(object_id=str(instance.id)).action_flag == DELETION


def test_delete_refuses_a_stale_page(
    admin_client: Client, storage: DjangoStorage, deletions: list[Any]
) -> None:
    instance = stored(storage, flows.TwoWaits)
    response = admin_client.post(url("delete", instance.id), {"revision": instance.revision + 1})
    assert messages_of(response)[0][0] == "error"
    assert deletions == []
    assert WorkflowInstance.objects.filter(pk=instance.id).exists()


def test_a_corrupt_row_can_be_deleted(admin_client: Client, deletions: list[Any]) -> None:
    row_id = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO workflow_instances (id, workflow, status, state) "
            "VALUES (%s, 'shop.flows.Retired', 'failed', '[]'::jsonb)",
            [row_id],
        )
    assert admin_client.get(url("delete", row_id)).status_code == 200
    admin_client.post(url("delete", row_id), {"revision": 1})
    assert deletions == [row_id]


def test_delete_needs_the_delete_permission(
    staff_client: Callable[..., Client], storage: DjangoStorage, deletions: list[Any]
) -> None:
    instance = stored(storage)
    client = staff_client("view_workflowinstance", "resume_workflowinstance")
    assert client.get(url("delete", instance.id)).status_code == 403
    assert client.post(url("delete", instance.id), {"revision": 1}).status_code == 403
    assert deletions == []


def test_the_delete_action_goes_through_the_storage(
    admin_client: Client, storage: DjangoStorage, deletions: list[Any]
) -> None:
    chosen = [stored(storage), stored(storage)]
    kept = stored(storage)
    response = admin_client.post(
        reverse("admin:hephaestus_django_workflowinstance_changelist"),
        {
            "action": "delete_selected",
            "_selected_action": [str(i.id) for i in chosen],
            "post": "yes",
        },
    )
    assert response.status_code == 302
    assert sorted(deletions) == sorted(i.id for i in chosen)
    assert list(WorkflowInstance.objects.values_list("pk", flat=True)) == [kept.id]


# --- which storage ----------------------------------------------------------------------------


def test_the_storage_is_the_one_on_the_rows_database(settings: Any) -> None:
    assert storage_for("default") is storages["default"]
    settings.HEPHAESTUS = {
        "STORAGES": {
            "default": {"BACKEND": "hephaestus_django.storage.DjangoStorage"},
            "tenant": {
                "BACKEND": "hephaestus_django.storage.DjangoStorage",
                "OPTIONS": {"using": "other"},
            },
        }
    }
    assert storage_for("other") is storages["tenant"]
    with pytest.raises(NoStorageForDatabase, match="uses the database 'nowhere'"):
        storage_for("nowhere")


def test_no_storage_for_the_database_is_a_clear_error(
    admin_client: Client, storage: DjangoStorage, settings: Any
) -> None:
    instance = stored(storage, flows.TwoWaits)
    settings.HEPHAESTUS = {
        "STORAGES": {
            "default": {
                "BACKEND": "hephaestus_django.storage.DjangoStorage",
                "OPTIONS": {"using": "other"},
            }
        }
    }
    response = admin_client.post(
        url("resume", instance.id),
        {"revision": instance.revision, "event": choice(flows.Payment, "paid")},
    )
    ((level, text),) = messages_of(response)
    assert level == "error"
    assert "no storage in settings.HEPHAESTUS['STORAGES'] uses the database 'default'" in text
    assert reloaded(instance).revision == instance.revision
