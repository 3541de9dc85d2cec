"""Smoke test of an installed hephaestus-django wheel, as a new user's project meets it.

Run by ``.ci/run`` with the interpreter of a fresh venv into which only the built wheel (and a
PostgreSQL driver) was installed, from a directory outside the source tree, so that everything
it imports comes from the wheel: a file the wheel lacks (a template, a static file, a migration,
``py.typed``, the settings reference the checks' hints name) fails it.

It runs ``django-admin startproject`` in a temporary directory, adds the app and a ``shop`` app
with a workflow, runs ``check``, ``migrate`` and ``makemigrations --check`` on a database of its
own (created in the server ``$DATABASE_URL`` names, dropped at the end), starts an instance,
resumes it to completion, and renders the admin's list and instance page.

    python .ci/wheel_smoke.py            # DATABASE_URL=postgresql://user@host:port/db
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

WORKFLOWS = """
from hephaestus_django import Done, Step, WaitForEvent, Workflow


class Reserve(Step):
    events = ("reserved",)

    def execute(self, instance, config, context):
        return "reserved"


class AwaitPayment(WaitForEvent):
    events = ("paid",)


class Fulfilment(Workflow):
    metadata = {"owner": "smoke"}
    start_step = Reserve
    transitions = {Reserve: {"reserved": AwaitPayment}, AwaitPayment: {"paid": Done}}
"""

RUN = """
import os, sys
from pathlib import Path

import django

django.setup()
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.test import Client
from django.test.utils import setup_test_environment

import hephaestus_django
from shop.workflows import Fulfilment

package = Path(hephaestus_django.__file__).resolve().parent
assert "site-packages" in str(package), f"imported from the source tree: {package}"
for part in (
    "py.typed",
    "docs/settings.md",
    "static/hephaestus_django/admin.css",
    "templates/admin/hephaestus_django/workflowinstance/detail.html",
    "migrations/0001_initial.py",
):
    assert (package / part).is_file(), f"the wheel lacks hephaestus_django/{part}"
assert finders.find("hephaestus_django/admin.css"), "the admin's stylesheet is not found"

instance_id = Fulfilment.start({"order": "A-1"}, key="order-A-1")
assert Fulfilment.get(instance_id).status == "waiting"
Fulfilment.resume(instance_id, "paid")
done = Fulfilment.get(instance_id)
assert done.status == "completed", done

setup_test_environment()
User.objects.create_superuser("smoke", "smoke@example.com", "smoke")
client = Client()
client.force_login(User.objects.get(username="smoke"))
base = "/admin/hephaestus_django/workflowinstance/"
for url in (base, f"{base}{instance_id}/change/", f"{base}dashboard/"):
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
page = client.get(f"{base}{instance_id}/change/").content.decode()
assert "Workflow metadata" in page and "hx-graph" in page, "the instance page lacks sections"
print(f"smoke: instance {instance_id} completed; the admin renders; files present in {package}")
"""


def main() -> None:
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        sys.exit("set DATABASE_URL to a PostgreSQL server the smoke test may create a database in")
    import psycopg

    name = f"hephaestus_smoke_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory(prefix="hephaestus-smoke-") as folder:
            run_project(Path(folder), urlunsplit(urlsplit(url)._replace(path=f"/{name}")))
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_project(folder: Path, url: str) -> None:
    bin_dir = Path(sys.executable).parent
    subprocess.run([bin_dir / "django-admin", "startproject", "smoke", str(folder)], check=True)
    shop = folder / "shop"
    shop.mkdir()
    (shop / "__init__.py").write_text("")
    (shop / "workflows.py").write_text(WORKFLOWS)
    parts = urlsplit(url)
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }
    settings = folder / "smoke" / "settings.py"
    settings.write_text(
        settings.read_text()
        + textwrap.dedent(
            f"""
            INSTALLED_APPS += ["django.contrib.postgres", "hephaestus_django", "shop"]
            DATABASES = {{"default": {database!r}}}
            """
        )
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "smoke.settings", "PYTHONPATH": str(folder)}
    env.pop("DATABASE_URL", None)

    def manage(*args: str) -> None:
        subprocess.run([sys.executable, "manage.py", *args], cwd=folder, env=env, check=True)

    manage("check", "--fail-level", "WARNING")
    manage("migrate", "--verbosity", "0")
    manage("makemigrations", "--check", "--dry-run", "hephaestus_django")
    (folder / "smoke_run.py").write_text(RUN)
    subprocess.run([sys.executable, "smoke_run.py"], cwd=folder, env=env, check=True)


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as error:
        sys.exit(f"smoke test failed: {' '.join(map(str, error.cmd))} exited {error.returncode}")
