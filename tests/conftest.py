"""Hooks for every test: one Ctrl-C or SIGTERM ends the run (`tests/interrupts.py`)."""

from tests.interrupts import pytest_configure, pytest_runtest_protocol  # noqa: F401  (pytest finds hooks by name)
