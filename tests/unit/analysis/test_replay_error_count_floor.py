"""What the README states of small error counts against a baseline without errors, at equal traffic
with the default Lambda metrics (measured for issue 10's audit; the judge is not tuned to it):
11 canary errors always fail a 15-period canary, 9 do not; a 30-period canary needs 12."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from deployguard_local import replay


def recording(name: str, periods: int, errors: list[int], seed: int, rpm: float = 200.0) -> dict[str, Any]:
    rng = random.Random(seed)
    calls = {side: [float(round(rng.gauss(rpm, math.sqrt(rpm)))) for _ in range(periods)] for side in "bc"}
    p50 = {side: [100 * math.exp(rng.gauss(0, 0.03)) for _ in range(periods)] for side in "bc"}
    p99 = {side: [320 * math.exp(rng.gauss(0, 0.08)) for _ in range(periods)] for side in "bc"}

    def metric(mid: str, name: str, stat: str, b: list[float], c: list[float]) -> dict[str, Any]:
        return {"id": mid, "name": name, "stat": stat, "baseline": b, "canary": c}

    return {
        "format": "deployguard-scenario/1", "name": name, "intervals": periods, "canary_weight": 0.5,
        "metrics": [
            metric("invocations", "Invocations", "Sum", calls["b"], calls["c"]),
            metric("errors", "Errors", "Sum", [0.0] * periods, [float(e) for e in errors]),
            metric("throttles", "Throttles", "Sum", [0.0] * periods, [0.0] * periods),
            metric("duration_p50", "Duration", "p50", p50["b"], p50["c"]),
            metric("duration_p99", "Duration", "p99", p99["b"], p99["c"]),
        ],
    }  # fmt: skip


def test_canary_errors_against_none_at_equal_traffic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        "15p-11-a-minute": (15, [1] * 11 + [0] * 4, "rollback"),
        "15p-11-at-once": (15, [11] + [0] * 14, "rollback"),
        "15p-9-a-minute": (15, [1] * 9 + [0] * 6, "promote"),
        "30p-12-a-minute": (30, [1] * 12 + [0] * 18, "rollback"),
        "30p-10-a-minute": (30, [1] * 10 + [0] * 20, "promote"),
    }
    for name, (periods, errors, _) in cases.items():
        for seed in range(3):
            document = recording(f"{name}-{seed}", periods, errors, seed)
            (tmp_path / f"{name}-{seed}.json").write_text(json.dumps(document))
    assert replay.main(["--json", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 15
    for row in rows:
        expected = cases[row["scenario"].rsplit("-", 1)[0]][2]
        assert row["decision"] == expected, row
