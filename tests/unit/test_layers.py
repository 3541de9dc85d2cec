"""The core and runtime layers never import Django (SPEC §2)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = (
    "import sys, hephaestus_django.core, hephaestus_django.runtime;"
    "import hephaestus_django.runtime.codec, hephaestus_django.serialization;"
    "import hephaestus_django.runtime.events, hephaestus_django.runtime.tracing;"
    "import hephaestus_django.telemetry; hephaestus_django.telemetry.install();"
    "import hephaestus_django;"
    "hephaestus_django.Workflow; hephaestus_django.InMemoryStorage; hephaestus_django.Step;"
    "assert 'django' not in sys.modules, sorted(m for m in sys.modules if m.startswith('django'))"
)


def test_core_and_runtime_do_not_import_django() -> None:
    pytest.importorskip("django")  # the check only means something where Django is installed
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_public_names_are_documented() -> None:
    import hephaestus_django

    assert sorted(hephaestus_django.__all__) == sorted(["__version__", *hephaestus_django._EXPORTS])
    for name in hephaestus_django.__all__:
        if name == "__version__":
            continue
        value = getattr(hephaestus_django, name)
        assert getattr(value, "__doc__", None), f"{name} has no docstring"


PACKAGE = Path(__file__).resolve().parents[2] / "hephaestus_django"


def _imports(path: Path) -> set[str]:
    """The modules ``path`` imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_postgres_imports_neither_the_admin_nor_the_commands() -> None:
    """postgres/ holds statements and their connections; the admin and the commands build on it,
    never the other way round."""
    above = ("hephaestus_django.admin", "hephaestus_django.management")
    for path in sorted((PACKAGE / "postgres").glob("*.py")):
        wrong = sorted(name for name in _imports(path) if name.startswith(above))
        assert not wrong, f"{path.name} imports {wrong}"


def test_every_statement_is_run_under_postgres() -> None:
    """No module of the Django layer outside postgres/ opens a cursor or executes SQL itself
    (core/ and runtime/ import no Django; testing/ creates the embedded server's databases,
    which is no statement of the app's)."""
    runs_sql = {"cursor", "execute", "executemany"}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in ("postgres", "testing", "migrations", "core", "runtime"):
            continue
        calls = [
            f"{relative}:{node.lineno}"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in runs_sql
        ]
        assert not calls, f"SQL run outside hephaestus_django/postgres/: {calls}"
