"""argparse ``type=`` validators shared by the management commands."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An int of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    """A number greater than 0."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {value}")
    return value


def non_negative_seconds(text: str) -> float:
    """A number of seconds, 0 included."""
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, not {value}")
    return value
