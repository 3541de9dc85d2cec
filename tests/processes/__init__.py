"""Tests with real processes: concurrency, crashes and timers across process deaths."""
