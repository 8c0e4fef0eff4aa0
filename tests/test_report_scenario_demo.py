"""`deployguard demo --scenario` replays a scenario at its own interval: a 5-minute scenario's periods are
5 minutes of the clock, the canary bakes the whole of it, and one longer than a canary step may bake is
a configuration error before anything runs, not a failed rollback."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "unit" / "analysis"))

from analysis_support import make_window

from deployguard_local import cli, demo


def _scenario(tmp_path: Path, intervals: int, interval_seconds: int) -> Path:
    window = make_window(intervals, rpm=300, seed=5)
    document = {
        "format": "deployguard-scenario/1", "name": f"five-min-{intervals}", "interval_seconds": interval_seconds,
        "intervals": intervals, "canary_weight": window.canary_weight,
        "metrics": [
            {"id": m.spec.id, "namespace": m.spec.namespace, "name": m.spec.name, "stat": m.spec.stat,
             "unit": m.spec.unit, "baseline": m.baseline, "canary": m.canary}
            for m in window.metrics
        ],
    }  # fmt: skip
    path = tmp_path / f"scenario-{intervals}.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_a_five_minute_scenario_is_judged_period_by_period_over_its_whole_length(tmp_path: Path) -> None:
    out = io.StringIO()
    assert demo.main(_scenario(tmp_path, 12, 300), out=out) == 0
    text = out.getvalue()
    assert "=> promoted" in text, text
    assert "in 12 of 12 periods" in text, text  # every period judged: none squeezed, none left unbaked
    assert "60 min (sim)" in text, text  # 12 periods of 5 minutes


def test_a_scenario_longer_than_a_step_may_bake_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _scenario(tmp_path, 14, 300)
    assert cli.main(["demo", "--scenario", str(path)]) == 2
    err = capsys.readouterr().err
    assert "14 intervals of 300 s cannot run as one canary step" in err, err
    assert "step_duration_seconds" in err and "at most 12 intervals of 300 s" in err, err
    assert "RollbackFailed" not in err
