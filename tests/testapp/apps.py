from __future__ import annotations

from django.apps import AppConfig


class TestAppConfig(AppConfig):
    # ready() deliberately does not import .workflows: hephaestus_django's autodiscovery must.
    name = "tests.testapp"
    label = "testapp"
