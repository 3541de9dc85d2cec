"""The example project: a shop whose orders are hephaestus-django workflows."""
