"""The dispatchers' contract suite (every adapter, one suite) and each adapter's own tests.

``tests.dispatchers`` is also a Django app in the worker processes' settings
(``worker_settings``), so that hephaestus_django's autodiscovery registers ``workflows`` there.
"""
