"""The hephaestus-django test-suite."""
