"""Every code block of the documentation site is run by a test, and the reference pages are
complete.

:data:`RUN_BY` maps each block, by its page and a fragment of its text, to the test that runs it
(``module.py::test``, in ``tests/``) or to ``.ci/run``. :func:`test_every_block_is_run` fails when
a block is added that nothing runs, when a fragment matches no block (or several), and when a
named test does not exist. The blocks themselves are run by ``test_docs_tutorial.py``,
``test_docs_guides.py``, ``test_docs_deployment.py`` and the modules named below; the extraction
is ``tests/docblocks.py``. ``make docs`` (in ``.ci/run``) builds the site with warnings as errors.
"""

from __future__ import annotations

import re

from django.core.management import get_commands, load_command_class

from tests.docblocks import DOCS, REPO, site_blocks, site_pages, unclaimed

GUIDES = "integration/test_docs_guides.py"
TUTORIAL = "integration/test_docs_tutorial.py"
DEPLOYMENT = "integration/test_docs_deployment.py"
TASKS = "dispatchers/test_tasks.py"
SCHEDULES = "integration/test_docs_schedules.py"

RUN_BY: dict[tuple[str, str], str] = {
    # Getting started
    ("docs/installation.md", "git clone"): f"{GUIDES}::test_installation",
    ("docs/installation.md", "[procrastinate,otel]"): f"{GUIDES}::test_installation",
    ("docs/installation.md", '"hephaestus_django",\n]'): f"{GUIDES}::test_installation",
    ("docs/tutorial.md", "git clone"): f"{TUTORIAL}::test_the_install_block_names_real_extras",
    ("docs/tutorial.md", "startproject"): f"{TUTORIAL}::test_the_tutorial_runs_on_workers",
    ("docs/tutorial.md", '"ENGINE"'): f"{TUTORIAL}::test_the_tutorial_runs_on_workers",
    ("docs/tutorial.md", "INSTALLED_APPS += ["): f"{TUTORIAL}::test_the_tutorial_runs_on_workers",
    (
        "docs/tutorial.md",
        "python manage.py migrate",
    ): f"{TUTORIAL}::test_the_tutorial_runs_on_workers",
    ("docs/tutorial.md", "class OrderWorkflow("): f"{TUTORIAL}::test_the_tutorial_runs_on_workers",
    (
        "docs/tutorial.md",
        "hephaestus_graph",
    ): f"{TUTORIAL}::test_the_graph_is_what_the_command_prints",
    ("docs/tutorial.md", "flowchart TD"): f"{TUTORIAL}::test_the_graph_is_what_the_command_prints",
    ("docs/tutorial.md", "procrastinate worker"): f"{TUTORIAL}::test_the_tutorial_runs_on_workers",
    (
        "docs/tutorial.md",
        "manage.py hephaestus_worker",
    ): f"{TUTORIAL}::test_the_tutorial_runs_on_workers",
    ("docs/tutorial.md", "OrderWorkflow.start("): f"{TUTORIAL}::test_the_tutorial_runs_on_workers",
    ("docs/tutorial.md", "OrderWorkflow.resume("): f"{TUTORIAL}::test_the_tutorial_runs_on_workers",
    ("docs/tutorial.md", "order.status"): f"{TUTORIAL}::test_the_tutorial_runs_on_workers",
    ("docs/tutorial.md", "runserver"): f"{TUTORIAL}::test_the_admin_commands_are_djangos",
    # Guides
    (
        "docs/guides/coming-from-hephaestus.md",
        "class Pricing(",
    ): f"{GUIDES}::test_coming_from_hephaestus",
    ("docs/guides/schedules.md", '"nightly-report": {'): f"{SCHEDULES}::test_the_settings_block",
    ("docs/guides/schedules.md", "hephaestus_schedules list"): f"{SCHEDULES}::test_the_shell_block",
    ("docs/guides/schedules.md", "class NightlyReport("): f"{SCHEDULES}::test_the_example",
    ("docs/guides/workers.md", "ProcrastinateDispatcher"): f"{GUIDES}::test_procrastinate_settings",
    ("docs/guides/workers.md", "django_tasks_db.DatabaseBackend"): (
        f"{TASKS}::test_the_docs_tasks_settings_pass_the_checks"
    ),
    (
        "docs/guides/workers.md",
        "db_worker",
    ): f"{TASKS}::test_the_docs_tasks_commands_are_the_process_tests",
    ("docs/guides/deployment.md", "procrastinate worker %i"): f"{DEPLOYMENT}::test_systemd_units",
    (
        "docs/guides/deployment.md",
        "Description=shop: workflow timers",
    ): f"{DEPLOYMENT}::test_systemd_units",
    (
        "docs/guides/deployment.md",
        "[program:shop-steps]",
    ): f"{DEPLOYMENT}::test_supervisord_programs",
    (
        "docs/guides/deployment.md",
        "apiVersion: apps/v1",
    ): f"{DEPLOYMENT}::test_kubernetes_deployments",
    (
        "docs/guides/testing.md",
        "def workflows_in_memory",
    ): f"{GUIDES}::test_testing_guide_under_pytest",
    ("docs/guides/testing.md", "class Reminder("): f"{GUIDES}::test_testing_guide_under_pytest",
    (
        "docs/guides/testing.md",
        "InMemoryDispatcher()",
    ): f"{GUIDES}::test_testing_guide_under_pytest",
    ("docs/guides/business-keys.md", "class Fulfilment("): f"{GUIDES}::test_business_keys",
    ("docs/guides/child-workflows.md", "class Ship(Child)"): f"{GUIDES}::test_child_workflows",
    ("docs/guides/versions.md", "class OnboardingV1("): f"{GUIDES}::test_versions_and_upgrades",
    ("docs/guides/retries.md", "class ChargeCard("): f"{GUIDES}::test_retries",
    ("docs/guides/flow-control.md", "STRIPE = Concurrency("): f"{GUIDES}::test_flow_control",
    ("docs/guides/flow-control.md", "class SyncCustomer("): f"{GUIDES}::test_debounce",
    ("docs/guides/flow-control.md", "class SendReceipt("): f"{GUIDES}::test_rate_limits",
    ("docs/guides/flow-control.md", "class Onboarding("): f"{GUIDES}::test_workflow_limits",
    ("docs/guides/retries.md", "class FetchRates("): f"{GUIDES}::test_timeouts",
    ("docs/guides/maps.md", "class ChargeLine("): f"{GUIDES}::test_maps",
    ("docs/guides/maps.md", "class ShipFromWarehouses("): f"{GUIDES}::test_map_over_children",
    ("docs/guides/cancelling.md", "Order.cancel(order_id"): f"{GUIDES}::test_cancelling",
    (
        "docs/guides/fixing-instances.md",
        "TAX_RATE = 20  # the bug",
    ): f"{GUIDES}::test_fixing_instances",
    ("docs/guides/fixing-instances.md", "copy = Order.fork("): f"{GUIDES}::test_fixing_instances",
    ("docs/guides/fixing-instances.md", "failed_id = "): f"{GUIDES}::test_fixing_instances",
    (
        "docs/guides/fixing-instances.md",
        "hephaestus_bulk retry",
    ): "integration/test_bulk_django.py::test_the_guides_shell_block",
    ("docs/guides/fixing-instances.md", "Order.pause("): f"{GUIDES}::test_fixing_instances",
    ("docs/guides/fixing-instances.md", "Order.pause_all("): f"{GUIDES}::test_fixing_instances",
    ("docs/guides/observability.md", "@receiver(step_failed)"): f"{GUIDES}::test_signals",
    ("docs/guides/observability.md", "InMemorySpanExporter()"): f"{GUIDES}::test_tracing",
    ("docs/guides/operations.md", "hephaestus_status"): f"{GUIDES}::test_operations",
    ("docs/guides/async.md", "async def quote_view("): f"{GUIDES}::test_async_view",
    ("docs/guides/storages.md", '"tenant_a": {'): f"{GUIDES}::test_named_storages",
    # Reference
    ("docs/reference/api.md", "from hephaestus_django import"): f"{GUIDES}::test_api_import",
    ("hephaestus_django/docs/settings.md", "LocalRunner"): f"{GUIDES}::test_settings_reference",
    ("hephaestus_django/docs/settings.md", "TasksDispatcher"): f"{GUIDES}::test_settings_reference",
    # Explanation
    ("docs/explanation/how-it-works.md", 'storages["default"]'): f"{GUIDES}::test_storage_api",
    ("docs/explanation/performance.md", "make bench"): ".ci/run",
    # Project
    ("docs/contributing.md", "make demo"): ".ci/run",
    ("docs/contributing.md", "make test"): ".ci/run",
    ("docs/contributing.md", "make docs"): ".ci/run",
}


def test_every_block_is_run() -> None:
    problems = unclaimed(site_blocks(), RUN_BY)
    ci = (REPO / ".ci" / "run").read_text()
    for (page, fragment), runner in RUN_BY.items():
        if runner == ".ci/run":
            command = fragment.split()[1]
            if not re.search(rf"make\b.*\b{command}\b", ci):
                problems.append(f".ci/run does not run {fragment!r} ({page})")
            continue
        module, test = runner.split("::")
        if f"def {test}(" not in (REPO / "tests" / module).read_text():
            problems.append(f"{page}: {fragment!r} names {runner}, which does not exist")
    assert not problems, "\n".join(problems)


def test_every_block_says_where_it_goes() -> None:
    """A caption over every block of the site's own pages: a file name, Shell, manage.py
    shell, Output, Example. (The included settings reference is also read as plain Markdown
    in an installed package, where its prose says where its blocks go.)"""
    for found in site_blocks():
        if found.page.startswith("docs/"):
            assert found.caption, f"{found} has no caption"


def test_every_page_is_in_the_table_of_contents() -> None:
    index = (DOCS / "index.md").read_text()
    for page in site_pages():
        if page.is_relative_to(DOCS) and page.name != "index.md":
            assert page.relative_to(DOCS).with_suffix("").as_posix() in index, page


def test_every_check_id_is_documented_with_its_fix() -> None:
    source = (REPO / "hephaestus_django" / "checks.py").read_text()
    for path in [*(REPO / "hephaestus_django").rglob("*.py")]:
        source += path.read_text()
    ids = set(re.findall(r"hephaestus\.[EW]\d{3}", source))
    assert len(ids) >= 19
    page = (DOCS / "reference" / "checks.md").read_text()
    documented = set(re.findall(r"^\| `(hephaestus\.[EW]\d{3})` \|", page, flags=re.M))
    assert documented == ids


def test_every_command_option_is_documented() -> None:
    page = (DOCS / "reference" / "commands.md").read_text()
    ours = sorted(name for name, app in get_commands().items() if app == "hephaestus_django")
    assert ours == [
        f"hephaestus_{n}"
        for n in ("bulk", "graph", "prune", "schedules", "status", "upgrade", "worker")
    ]
    for name in ours:
        section = page.split(f"## `{name}`")[1].split("\n## ")[0]
        parser = load_command_class("hephaestus_django", name).create_parser("manage.py", name)
        for action in parser._actions:
            own = [o for o in action.option_strings if o.startswith("--")]
            if action.dest in {"help", "version", "verbosity", "settings", "pythonpath"}:
                continue
            if action.dest in {"traceback", "no_color", "force_color", "skip_checks"}:
                continue
            label = own[0] if own else action.dest
            assert f"`{label}" in section, f"{name}: {label} is not documented"


def test_the_performance_figures_come_from_the_committed_report() -> None:
    """Each ratio with its spread, ``0.77 (0.74-0.80)`` (an en dash), is one of LATEST.md's
    (``**0.77x** (0.74-0.80; ...``)."""
    page = (DOCS / "explanation" / "performance.md").read_text()
    report = (REPO / "bench" / "results" / "LATEST.md").read_text()
    figures = re.findall(r"(\d+\.\d\d) \((\d+\.\d\d)\N{EN DASH}(\d+\.\d\d)\)", page)
    assert len(figures) >= 20
    for median, low, high in figures:
        assert f"**{median}x** ({low}-{high}" in report, (median, low, high)
    assert "make bench" in page
