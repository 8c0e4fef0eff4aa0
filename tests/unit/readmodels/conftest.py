"""Fixtures shared with the other moto-table tests (tests/support/moto_table.py)."""

from moto_table import aws, publisher, repo, sim_clock  # noqa: F401
