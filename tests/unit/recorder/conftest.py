"""Fixtures of the recorder tests (shared with the hook tests: tests/support/hook_support.py)."""

import pytest
from hook_support import cd_aws, ledger, publisher, sim_clock, target, targets

__all__ = ["cd_aws", "ledger", "publisher", "sim_clock", "target", "targets"]


@pytest.fixture(autouse=True)
def _local_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local mode (http and loopback health checks allowed), for these tests only."""
    monkeypatch.setenv("DEPLOYGUARD_LOCAL", "1")
