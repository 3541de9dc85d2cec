"""Every code block of the README is run, so the quickstart cannot rot.

The quickstart is followed word for word, as a newcomer would: a fresh virtualenv, ``pip install``
of this checkout, ``django-admin startproject``, the README's settings lines, its
``shop/workflows.py``, ``manage.py migrate``, its Python blocks in ``manage.py shell``, and its
worker. Blocks that are shell commands for contributors (``make test``, ``make demo``) are what
``.ci/run`` runs. :func:`test_every_block_is_verified` fails when a block is added that nothing
here runs, and :func:`test_every_relative_link_resolves` when a link points nowhere. The site's
blocks are run by ``test_docs*.py``; the extraction is shared (``tests/docblocks.py``).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from django.db import connection

from tests.docblocks import REPO, blocks, unclaimed
from tests.docblocks import block as page_block

README = REPO / "README.md"

# Each block is recognised by a fragment of its text, and run by the test named here.
VERIFIED = {
    "pip install ./hephaestus-django": "test_quickstart_word_for_word",
    '"ENGINE": "django.db.backends.postgresql"': "test_quickstart_word_for_word",
    '"hephaestus_django",\n]': "test_quickstart_word_for_word",
    "python manage.py migrate": "test_quickstart_word_for_word",
    "class OrderWorkflow(Workflow):": "test_quickstart_word_for_word",
    "instance_id = OrderWorkflow.start(": "test_quickstart_word_for_word",
    "from hephaestus_django.models import WorkflowInstance": "test_quickstart_word_for_word",
    "python manage.py hephaestus_worker": "test_quickstart_word_for_word",
    "make test": ".ci/run",
    "make demo": ".ci/run",
}


def block(fragment: str) -> str:
    return page_block("README.md", fragment)


def test_every_block_is_verified() -> None:
    problems = unclaimed(blocks(README), {("README.md", key): run for key, run in VERIFIED.items()})
    assert not problems, "\n".join(problems)
    ci = (REPO / ".ci" / "run").read_text()
    for fragment, runner in VERIFIED.items():
        if runner == ".ci/run":
            assert fragment in ci, f".ci/run does not run the README's {fragment!r}"
        else:
            assert runner in globals(), runner


def test_the_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) <= 200


def test_every_relative_link_resolves() -> None:
    """Links and images to files of the checkout (``docs/tutorial.md``, ``LICENSE``) exist, so
    they work on a forge and in a clone alike; a fragment must name a heading of its page."""
    text = README.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [link for link in links if not urlsplit(link).scheme and not link.startswith("#")]
    assert len(relative) >= 20
    for link in relative:
        parts = urlsplit(link)
        target = REPO / unquote(parts.path)
        assert target.exists(), f"README links to {link}, which does not exist"
        if parts.fragment:
            headings = re.findall(r"^#+ (.+)$", target.read_text(), flags=re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
            assert parts.fragment in slugs, f"README links to {link}: no such heading"


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.slow
def test_quickstart_word_for_word(tmp_path: Path, fresh_database: dict[str, str]) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    clone, install = block("pip install ./hephaestus-django").strip().splitlines()
    # No public URL yet: the README says so rather than inventing one, and this checkout is
    # installed in place of the clone (so uncommitted changes are tested too).
    assert clone == "git clone <this repository's URL> hephaestus-django"
    pip_install = shlex.split(install)
    assert pip_install[:3] == ["pip", "install", "./hephaestus-django"]
    run(python, "-m", "pip", "install", "-q", REPO, *pip_install[3:], cwd=tmp_path)
    # The settings reference the checks' hints point to is installed with the package.
    docs = run(
        python,
        "-c",
        "from hephaestus_django.conf import SETTINGS_DOCS as d; print(d)",
        cwd=tmp_path,
    )
    assert Path(docs.strip()).is_file()
    assert Path(docs.strip()).is_relative_to(venv)

    run(venv / "bin" / "django-admin", "startproject", "mysite", cwd=tmp_path)
    project = tmp_path / "mysite"
    run(python, "manage.py", "startapp", "shop", cwd=project)
    (project / "shop" / "workflows.py").write_text(block("class OrderWorkflow(Workflow):"))
    settings = project / "mysite" / "settings.py"
    apps = re.findall(r'"([\w.]+)"', block('"hephaestus_django",\n]'))
    assert apps == ["django.contrib.postgres", "hephaestus_django"]
    text = settings.read_text().replace(
        "INSTALLED_APPS = [", "INSTALLED_APPS = [\n" + "".join(f"    {a!r},\n" for a in apps)
    )
    text += "\nINSTALLED_APPS.append('shop')\n"
    settings.write_text(text)
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    (command,) = block("python manage.py migrate").strip().splitlines()

    # Before the database step, the check says which database to change, in those words.
    refused = subprocess.run(
        [python, *command.split()[1:]], cwd=project, env=env, capture_output=True, text=True
    )
    assert refused.returncode != 0
    assert "settings.DATABASES['default']: (hephaestus.E009)" in refused.stderr

    # The README's DATABASES block replaces startproject's, with this server's details.
    databases = block('"ENGINE": "django.db.backends.postgresql"')
    for key, value in [
        ("NAME", fresh_database["dbname"]),
        ("USER", fresh_database["user"]),
        ("PASSWORD", connection.settings_dict["PASSWORD"] or ""),
        ("HOST", fresh_database["host"]),
        ("PORT", fresh_database["port"]),
    ]:
        databases, found = re.subn(rf'"{key}": "[^"]*"', f'"{key}": {value!r}', databases)
        assert found == 1, key
    text, found = re.subn(r"^DATABASES = \{\n.*?^\}\n", databases, text, flags=re.M | re.S)
    assert found == 1
    settings.write_text(text)
    run(python, *command.split()[1:], cwd=project, env=env)
    assert "no issues" in run(python, "manage.py", "check", cwd=project, env=env)

    script = "\n".join(
        [
            block("instance_id = OrderWorkflow.start("),
            "assert instance.status == 'completed'",
            "assert instance.context.result(Ship) == {'tracking': 'TRK-R-9'}",
            "assert [i.id for i in OrderWorkflow.list(status='completed')] == [instance_id]",
            block("from hephaestus_django.models import WorkflowInstance"),
            "assert [i.id for i in rows.to_instances()] == [instance_id]",
            "print('README OK')",
        ]
    )
    out = run(python, "manage.py", "shell", "-c", script, cwd=project, env=env)
    assert "README OK" in out

    # The worker starts, makes its passes, and stops cleanly on SIGTERM, as a supervisor stops it.
    (worker,) = shlex.split(block("python manage.py hephaestus_worker"))[2:]
    process = subprocess.Popen(
        [python, "manage.py", worker], cwd=project, env=env, stderr=subprocess.PIPE, text=True
    )
    time.sleep(3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
