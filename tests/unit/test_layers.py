"""The layers (SPEC §2): core and runtime never import Django, postgres/ imports no admin and
runs every statement; no test module imports another."""

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


TESTS = Path(__file__).resolve().parents[1]


def _is_test_module(dotted: str) -> bool:
    parts = dotted.split(".")
    return parts[0] == "tests" and parts[-1].startswith("test_")


def _imported_modules(path: Path, root: Path = TESTS) -> list[tuple[int, str]]:
    """Every module that ``path`` (in the ``tests`` package at ``root``) imports, anywhere in it,
    as an absolute dotted name."""
    package = ".".join(("tests", *path.relative_to(root).parent.parts))
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            found.append((node.lineno, module))
            # ``from tests.unit import test_engine`` imports a module too
            found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
    return found


def test_no_test_module_imports_another() -> None:
    """Helpers shared by test modules live in ``tests/support``, fixtures in a ``conftest.py``."""
    offending = [
        f"{path.relative_to(TESTS.parent)}:{line}: imports {module}"
        for path in sorted(TESTS.rglob("*.py"))
        for line, module in _imported_modules(path)
        if _is_test_module(module)
    ]
    assert offending == [], "\n".join(offending)


def test_the_import_check_sees_every_form_of_import(tmp_path: Path) -> None:
    cases = {
        "from tests.unit.test_engine import run_waves": True,
        "import tests.unit.test_engine": True,
        "from tests.unit import test_engine": True,
        "from .test_engine import run_waves": True,
        "from . import test_engine": True,
        "from ..contract.test_storage_contract import stored": True,
        "from tests.support.engine import run_waves": False,
        "from tests import flows": False,
        "from ..support import engine": False,
    }
    unit = tmp_path / "unit"
    unit.mkdir()
    for source, imports_a_test_module in cases.items():
        path = unit / "test_x.py"
        path.write_text(f"def f():\n    {source}\n")  # inside a function: found too
        modules = [name for _line, name in _imported_modules(path, root=tmp_path)]
        assert any(map(_is_test_module, modules)) is imports_a_test_module, (source, modules)
