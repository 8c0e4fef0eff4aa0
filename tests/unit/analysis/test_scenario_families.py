"""Our own scenario families load as scenarios and mean what their truth says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployguard.analysis.scenario import load_scenario
from deployguard.analysis.settings import JudgeSettings
from deployguard_local.bench import calibration_report
from deployguard_local.replay import replay_scenario
from deployguard_local.scenario_families import FAMILIES, write_corpus

SHORT = [f for f in FAMILIES if f != "long_healthy_jitter"]


def test_families_are_valid_scenarios_with_their_truth(tmp_path: Path) -> None:
    assert write_corpus(tmp_path, seed=4, per_family=2, families=SHORT) == 2 * len(SHORT)
    for path in sorted(tmp_path.glob("*.json")):
        scenario = load_scenario(path)
        truth = json.loads(path.read_text())["truth"]
        assert truth["family"] in FAMILIES and truth["expect"] in {"promote", "rollback", "hold"}
        result = replay_scenario(scenario, JudgeSettings())
        if truth["expect"] == "hold":  # the canary's Errors lost while it was invoked: never promoted
            assert result.decision == "hold" and "errors: missing evidence" in result.reason
        if truth["family"] == "recording_gaps_healthy":  # whole minutes lost: nothing invoked-but-unreported
            assert "missing" not in result.reason
    interval = {load_scenario(p).interval_seconds for p in tmp_path.glob("five_minute_*.json")}
    assert interval == {300}


def test_calibration_table_counts_false_rollbacks(tmp_path: Path) -> None:
    write_corpus(tmp_path, seed=5, per_family=2, families=["short_healthy", "short_error_step"])
    out = tmp_path / "report.txt"
    with out.open("w") as fh:
        assert calibration_report([tmp_path], fh, levels=(0.99, 0.999))
    text = out.read_text()
    assert "on 2 healthy canaries" in text and "0/2" in text


def test_pooled_calibration_gives_the_share_its_exact_bound_and_chance() -> None:
    import io

    from deployguard_local.bench import binomial_tail, binomial_upper, pooled_calibration

    assert binomial_upper(0, 280) == pytest.approx(1 - 0.05 ** (1 / 280), rel=1e-6)  # no false alarm in a seed
    assert binomial_tail(0, 1400, 0.001) == 1.0
    assert binomial_tail(3, 2, 0.5) == 0.0 and binomial_tail(1, 5, 0.0) == 0.0 and binomial_tail(1, 5, 1.0) == 1.0
    assert binomial_upper(5, 5) == 1.0 and binomial_upper(0, 0) == 1.0  # all rolled back; none to judge
    assert binomial_tail(1, 280, 0.001) == pytest.approx(1 - 0.999**280, rel=1e-9)  # one in a seed: 24% by chance
    out = io.StringIO()
    pooled_calibration({0.999: [2, 1400], 0.99: [6, 1400]}, [1, 2, 3, 4, 5], out)
    rows = out.getvalue().splitlines()
    assert rows[1] == "== Calibration over seeds 1,2,3,4,5 at once =="
    assert rows[3].split() == ["0.99", "0.0100", "6/1400", "0.0043", "0.0084", "0.995"]
    assert rows[4].split() == ["0.999", "0.0010", "2/1400", "0.0014", "0.0045", "0.408"]
