"""The shop app: order fulfilment as a hephaestus-django workflow, and the demo command."""
