"""`deployguard bench scale` hands its options to the benchmark, --jobs among them (the README's `make bench` runs
it with `--jobs N`); the measuring itself is stubbed: it takes minutes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deployguard_local import bench_scale, cli


def test_jobs_and_sizes_reach_the_benchmark(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asked: list[tuple[list[int], int]] = []

    def measured(sizes: list[int], monitored_share: float = 0.5, jobs: int = 1) -> dict[str, Any]:
        asked.append((sizes, jobs))
        return {"sizes": sizes, "jobs": jobs}

    monkeypatch.setattr(bench_scale, "run", measured)
    assert cli.main(["bench", "scale", "--sizes", "10,100", "--jobs", "2", "--json"]) == 0
    assert asked == [([10, 100], 2)] and json.loads(capsys.readouterr().out) == {"sizes": [10, 100], "jobs": 2}
    assert cli.main(["bench", "scale", "--sizes", "10", "--json"]) == 0
    assert asked[-1] == ([10], 1)


def test_jobs_below_one_is_a_usage_error_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "scale", "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err
