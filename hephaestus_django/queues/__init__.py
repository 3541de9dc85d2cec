"""Adapters of ``QueuedRunner`` to existing job engines, each an optional extra.

- :mod:`hephaestus_django.queues.tasks`: Django's Tasks API (``django.tasks`` on Django 6,
  the ``django-tasks`` backport on Django 5.2), ``pip install 'hephaestus-django[tasks]'``.
"""
