"""The xdist controller starts the demo run beside the workers only for the tests that read it: the list it
goes by names every file that asks for the ``demo_run`` fixture."""

from __future__ import annotations

from pathlib import Path

from demo_support import DEMO_READERS

ROOT = Path(__file__).resolve().parents[2]


def test_every_reader_of_the_demo_run_starts_it() -> None:
    readers = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "tests").rglob("*.py")
        if path != Path(__file__).resolve()
        and path != ROOT / "tests" / "conftest.py"  # this list; the fixture
        and "demo_run" in path.read_text(encoding="utf-8")
    }
    assert readers and all(r.startswith(DEMO_READERS) for r in readers), sorted(readers)
