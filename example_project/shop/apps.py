"""App config of the shop."""

from django.apps import AppConfig


class ShopConfig(AppConfig):
    """The shop; hephaestus_django imports its ``workflows`` module at start-up."""

    name = "shop"
    verbose_name = "Shop"
