"""A guarded metric the recording (or the window) does not hold is missing evidence, never promoted
(issue 10 audit: a 10% error regression whose recording lacked ``errors`` was promoted on the
other metrics); a p99 recorded without a p50 says why it cannot be judged at low traffic; replay
counts inconclusive looks for ``on_no_evidence`` as the workflow does live, after the step's bake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from analysis_support import make_window

from deployguard.analysis.judge import judge_canary
from deployguard.analysis.settings import JudgeSettings
from deployguard.config import CanaryPlan
from deployguard.models import CanaryWindow, Decision
from deployguard_local import replay

FULL = """judge:
  metrics:
    - {id: invocations, name: Invocations, stat: Sum, unit: Count}
    - {id: errors, name: Errors, stat: Sum, unit: Count, relative_to: invocations}
    - {id: throttles, name: Throttles, stat: Sum, unit: Count, relative_to: invocations}
    - {id: duration_p50, name: Duration, stat: p50, unit: Milliseconds}
    - {id: duration_p99, name: Duration, stat: p99, unit: Milliseconds}
"""


def scenario_of(window: CanaryWindow, name: str, drop: tuple[str, ...] = (), interval: int = 60) -> dict[str, Any]:
    return {
        "format": "deployguard-scenario/1", "name": name, "interval_seconds": interval,
        "intervals": window.periods, "canary_weight": window.canary_weight,
        "metrics": [
            {"id": m.spec.id, "namespace": m.spec.namespace, "name": m.spec.name, "stat": m.spec.stat,
             "unit": m.spec.unit, "baseline": m.baseline, "canary": m.canary}
            for m in window.metrics if m.spec.id not in drop
        ],
    }  # fmt: skip


def run(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    assert replay.main(["--json", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def write(tmp_path: Path, name: str, document: dict[str, Any] | str) -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


BAD_ERRORS = make_window(20, rpm=2000, weight=0.1, base_error=0.002, canary_error=0.1, seed=11)


def test_a_recording_without_its_errors_is_held_not_promoted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = write(tmp_path, "whole.json", scenario_of(BAD_ERRORS, "bad10pct"))
    [row] = run(capsys, str(whole))
    assert row["decision"] == "rollback" and "errors" in row["reason"]  # with its errors: caught
    lacking = write(tmp_path, "noerrors.json", scenario_of(BAD_ERRORS, "bad10pct-noerrors", drop=("errors",)))
    # no --config: the AWS/Lambda default metrics are guarded; a config listing errors (not optional)
    for args in ([], ["--config", str(write(tmp_path, "full.yaml", FULL))]):
        [row] = run(capsys, *args, str(lacking))
        assert row["decision"] == "hold", args
        assert row["reason"].startswith(
            "errors: missing evidence: not in the recording for the canary's periods 0-19; not in the recording"
            " for the baseline's periods 0-19"
        ), row["reason"]
    # errors marked optional: the user opted out, the other metrics decide
    optional = write(tmp_path, "optional.yaml", FULL.replace("relative_to: invocations}", "relative_to: invocations,"
                                                               " optional: true}", 1))  # fmt: skip
    [row] = run(capsys, "--config", str(optional), str(lacking))
    assert row["decision"] == "promote" and "errors" not in row["reason"]


def test_a_missing_guarded_metric_rolls_back_by_configuration_after_the_bake_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lacking = write(tmp_path, "noerrors.json", scenario_of(BAD_ERRORS, "bad10pct-noerrors", drop=("errors",)))
    config = write(tmp_path, "rb.yaml", "judge:\n  on_no_evidence: rollback\n  max_inconclusive_periods: 5\n")
    [row] = run(capsys, "--config", str(config), str(lacking))
    # live, inconclusive looks count once the step baked 300 s (periods 0-4): the 6th after it is period 9
    assert (row["decision"], row["decided_at"]) == ("rollback", 9)
    assert "after 6 inconclusive looks past the step's 300 s bake time: errors: missing evidence" in row["reason"]


def test_inconclusive_looks_count_after_the_configured_bake_time_and_period_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = make_window(24, rpm=2000, weight=0.0, seed=5)  # no canary traffic: never conclusive
    one_minute = write(tmp_path, "quiet60.json", scenario_of(quiet, "quiet60"))
    five_minutes = write(tmp_path, "quiet300.json", scenario_of(quiet, "quiet300", interval=300))
    whole = write(tmp_path, "dg.yaml", "defaults:\n  canary:\n    step_duration_seconds: 600\n  judge:\n"
                                       "    on_no_evidence: rollback\n    max_inconclusive_periods: 2\n")  # fmt: skip
    bare = write(tmp_path, "rb.yaml", "on_no_evidence: rollback\nmax_inconclusive_periods: 2\n")
    assert CanaryPlan().step_duration_seconds == replay.DEFAULT_STEP_SECONDS
    rows = {r["scenario"]: r for r in run(capsys, "--config", str(bare), str(one_minute), str(five_minutes))}
    assert rows["quiet60"]["decided_at"] == 4 + 2  # baked at the look after period 4, then 2 more
    assert rows["quiet300"]["decided_at"] == 2  # a 5-minute period is the whole bake
    [row] = run(capsys, "--config", str(whole), str(one_minute))
    assert (row["decision"], row["decided_at"]) == ("rollback", 9 + 2)  # 600 s: from the look after period 9
    assert all(r["decision"] == "rollback" for r in rows.values())


LOW_4X = make_window(20, rpm=200, weight=0.1, canary_latency_mult=4.0, seed=21)  # 20 canary calls a minute


def test_a_p99_recorded_without_a_p50_says_it_cannot_fall_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    both = write(tmp_path, "both.json", scenario_of(LOW_4X, "low4x"))
    p99 = write(tmp_path, "p99.json", scenario_of(LOW_4X, "low4x-p99only", drop=("duration_p50",)))
    rows = {r["scenario"]: r for r in run(capsys, str(both), str(p99))}
    assert rows["low4x"]["decision"] == "rollback" and "duration_p50" in rows["low4x"]["reason"]
    # no --config: Duration is guarded, recorded through its p99; a p50 it never had is not "missing"
    assert rows["low4x-p99only"]["decision"] == "hold"
    assert (
        "duration_p99: too few invocations per period for a p99 (it needs 100) and no p50 of Duration in the data"
        " to judge it through" in rows["low4x-p99only"]["reason"]
    )
    # a configuration that guards duration_p50 finds it missing from the recording
    [row] = run(capsys, "--config", str(write(tmp_path, "full.yaml", FULL)), str(p99))
    assert row["decision"] == "hold" and row["reason"].startswith(
        "duration_p50: missing evidence: not in the recording"
    )


def test_the_default_metric_set_is_that_of_the_recordings_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    healthy = make_window(20, rpm=2000, weight=0.1, seed=3)
    rows = {
        r["scenario"]: r
        for r in run(
            capsys,
            str(write(tmp_path, "whole.json", scenario_of(healthy, "whole"))),
            str(write(tmp_path, "nothrottles.json", scenario_of(healthy, "nothrottles", drop=("throttles",)))),
        )
    }
    assert rows["whole"]["decision"] == "promote"
    assert rows["nothrottles"]["decision"] == "hold" and rows["nothrottles"]["reason"].startswith("throttles: missing")
    custom = scenario_of(healthy, "custom", drop=("errors", "throttles", "duration_p50", "duration_p99"))
    custom["metrics"].append({"id": "cpu", "namespace": "Shop", "name": "CPU", "stat": "Average",
                              "baseline": [40.0] * 20, "canary": [40.5] * 20})  # fmt: skip
    custom["metrics"] = [m for m in custom["metrics"] if m["id"] != "invocations"]
    unnamed = dict(
        custom, name="unnamed", metrics=[{k: v for k, v in custom["metrics"][0].items() if k != "namespace"}]
    )
    rows = {
        r["scenario"]: r
        for r in run(capsys, str(write(tmp_path, "custom.json", custom)), str(write(tmp_path, "unnamed.json", unnamed)))
    }
    # a namespace without default metrics, or custom metrics whose namespace was left to default: what it has
    assert all("not in the recording" not in r["reason"] for r in rows.values()), rows
    alb = {
        "format": "deployguard-scenario/1", "name": "alb", "intervals": 20, "canary_weight": 0.1,
        "metrics": [
            {"id": "requests", "namespace": "AWS/ApplicationELB", "name": "RequestCount", "stat": "Sum",
             "baseline": [900.0] * 20, "canary": [100.0] * 20},
            {"id": "latency_p50", "namespace": "AWS/ApplicationELB", "name": "TargetResponseTime", "stat": "p50",
             "baseline": [0.1] * 20, "canary": [0.1] * 20},
        ],
    }  # fmt: skip
    [row] = run(capsys, str(write(tmp_path, "alb.json", alb)))
    assert row["decision"] == "hold" and row["reason"].startswith("errors: missing evidence: not in the recording")


def test_judge_canary_sees_a_metric_the_settings_name_but_the_window_lacks_as_missing() -> None:
    window = BAD_ERRORS.model_copy(update={"metrics": [m for m in BAD_ERRORS.metrics if m.spec.id != "errors"]})
    named = JudgeSettings.model_validate({"metrics_preset": "lambda"})
    verdict = judge_canary(window, named)
    assert verdict.decision == Decision.INCONCLUSIVE
    assert verdict.summary.startswith("errors: missing evidence: not in the window for the canary's periods 0-19")
    # settings that name no metrics judge the window's metrics as given (as the assessor builds every window
    # from the configured metrics, a configured one is never absent from it)
    assert judge_canary(window, JudgeSettings()).decision == Decision.HEALTHY
    # an optional metric may be absent
    optional = JudgeSettings.model_validate(
        {"metrics": [m.model_dump() | ({"optional": True} if m.id == "errors" else {}) for m in named.metrics]}
    )
    assert judge_canary(window, optional).decision == Decision.HEALTHY
