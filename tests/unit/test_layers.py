"""The core and runtime layers never import Django (SPEC §2)."""

from __future__ import annotations

import subprocess
import sys

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
