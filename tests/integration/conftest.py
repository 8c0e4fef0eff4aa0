"""The built-in demo, run once per session: its output and the local state it saves."""

from __future__ import annotations

import io

import pytest
from demo_support import DemoRun


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    from deployguard_local import demo

    state_dir = tmp_path_factory.mktemp("local-state")
    out = io.StringIO()
    code = demo.main(out=out, state_dir=state_dir)
    return DemoRun(code, out.getvalue(), state_dir)
