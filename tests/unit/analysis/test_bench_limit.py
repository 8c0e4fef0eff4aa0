"""``make bench``'s limit line: the shared oracle asked for as much evidence as DeployGuard's tests need."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from analysis_support import shared_dir

from deployguard.analysis.scenario import load_scenario
from deployguard.analysis.settings import JudgeSettings
from deployguard_local.bench import evidence_bar, judge_bench_module, oracle_at_our_bar

CANARYGEN = shared_dir() / "bench" / "canarygen.py"
pytestmark = pytest.mark.skipif(not CANARYGEN.is_file(), reason="the shared benchmark (../shared) is absent")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("limit")
    families = "bad_latency_shift,bad_business,healthy"
    subprocess.run(
        [sys.executable, str(CANARYGEN), str(out), "--seed", "5", "--per-family", "3", "--families", families],
        check=True,
        capture_output=True,
    )
    return out


def test_the_bar_is_the_failing_threshold_of_the_errors_and_latency_tests(corpus: Path) -> None:
    for path in sorted(corpus.glob("*.json")):
        scenario = load_scenario(path)
        settings = JudgeSettings().for_run(scenario.intervals)
        business = any(m.id == "conversions" for m in scenario.metrics)
        # errors, p50 and p99 weigh 1 each, throttles 0.2, a business rate 1
        total = 4.2 if business else 3.2
        expected = settings.threshold_for_share(1.0 / total) + math.log(max(scenario.intervals, 15) / 30)
        assert evidence_bar(path) == pytest.approx(expected)


def test_the_limit_line_reads_the_truth_at_that_bar(corpus: Path) -> None:
    out = io.StringIO()
    figures = oracle_at_our_bar(corpus, out)
    line = out.getvalue()
    assert line.startswith("\nlimit: the oracle asked for DeployGuard's evidence bar (")
    assert "detections taking 6 periods or more" in line
    # the oracle knows the onset and the effect: it rolls back no healthy canary; asked for more evidence
    # than the shared benchmark's own oracle (1%, 4.6 nats) it finds no more regressions, none sooner
    assert figures["false_rollbacks_on_healthy"] == 0.0
    bench = judge_bench_module()
    scenarios = [json.loads(p.read_text()) for p in sorted(corpus.glob("*.json"))]
    at_one_percent = bench.score(scenarios, {sc["name"]: bench.oracle(sc) for sc in scenarios})
    assert 0.0 < figures["detection_rate"] <= at_one_percent["detection_rate"]
    assert figures["ttd_median"] >= at_one_percent["ttd_median"]
    assert figures["ttd_p90"] >= at_one_percent["ttd_p90"]
    assert f"TTD median / p90 {figures['ttd_median']:.0f} / {figures['ttd_p90']:.1f}" in line
