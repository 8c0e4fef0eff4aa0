from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from analysis_support import shared_dir

from deployguard.analysis.scenario import load_scenario, metric_specs_from_scenario
from deployguard.exceptions import ScenarioError
from deployguard.models import MetricKind
from deployguard_local import replay

CANARYGEN = shared_dir() / "bench" / "canarygen.py"
needs_shared = pytest.mark.skipif(not CANARYGEN.is_file(), reason="the shared benchmark (../shared) is absent")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scenarios")
    families = "healthy,bad_error_step,no_traffic,bad_throttles"
    subprocess.run(
        [sys.executable, str(CANARYGEN), str(out), "--seed", "3", "--per-family", "2", "--families", families],
        check=True,
        capture_output=True,
    )
    return out


@needs_shared
def test_replay_json_follows_the_contract(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert replay.main(["--json", str(corpus)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 8
    truth = {p.stem: json.loads(p.read_text())["truth"] for p in corpus.glob("*.json")}
    for row in rows:
        assert set(row) >= {"scenario", "decision", "decided_at"}
        expect = truth[row["scenario"]]
        if expect["expect"] == "hold":
            assert row["decision"] == "hold"  # no traffic is never promoted
        if expect["expect"] == "rollback" and row["decision"] == "rollback":
            assert row["decided_at"] >= expect["onset"]
        if expect["expect"] == "promote":
            assert row["decision"] != "rollback"


@needs_shared
def test_replay_table_and_config(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "judge.yaml"
    config.write_text("confidence: 0.99\nmin_canary_invocations: 10\non_no_evidence: rollback\n")
    one = sorted(corpus.glob("no_traffic-*.json"))[0]
    assert replay.main(["--config", str(config), str(one)]) == 0
    out = capsys.readouterr().out
    assert "scenario" in out and "rollback" in out  # no evidence, then rolled back by configuration


def test_bad_config_names_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "judge.json"
    config.write_text(json.dumps({"min_effect": {"rate_relative": "lots"}}))
    assert replay.main(["--config", str(config), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "min_effect.rate_relative" in err
    config.write_text("{not json")
    assert replay.main(["--config", str(config), str(tmp_path)]) == 2
    assert str(config) in capsys.readouterr().err


def _scenario(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "format": "deployguard-scenario/1",
        "name": "s",
        "interval_seconds": 60,
        "intervals": 3,
        "canary_weight": 0.1,
        "metrics": [
            {"id": "invocations", "namespace": "AWS/Lambda", "name": "Invocations", "stat": "Sum",
             "baseline": [100, 100, 100], "canary": [10, 10, 10]},
            {"id": "errors", "namespace": "AWS/Lambda", "name": "Errors", "stat": "Sum",
             "baseline": [0, 1, 0], "canary": [0, None, 0]},
            {"id": "conversions", "namespace": "Shop", "name": "Done", "stat": "Sum",
             "direction": "decrease_is_bad", "relative_to": "invocations",
             "baseline": [5, 5, 5], "canary": [1, 0, 1]},
        ],
    }  # fmt: skip
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"format": "other/1"}, "format"),
        ({"intervals": "many"}, "intervals"),
        ({"canary_weight": 2}, "canary_weight"),
        ({"intervals": 4}, "metrics.0.baseline"),
        ({"metrics": [{"id": "errors", "name": "Errors", "baseline": [1, "x", 0], "canary": [0, 0, 0]}]}, "metrics.0"),
    ],
)
def test_malformed_scenario_names_file_and_field(
    tmp_path: Path, change: dict[str, object], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_scenario(**change)))
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(path) in str(err.value) and field in str(err.value)
    assert replay.main(["--json", str(path)]) == 1
    assert str(path) in capsys.readouterr().err


def test_not_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{")
    with pytest.raises(ScenarioError, match=r"broken\.json"):
        load_scenario(path)


def test_scenario_maps_onto_specs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(_scenario()))
    specs = {s.id: s for s in metric_specs_from_scenario(load_scenario(path))}
    assert specs["invocations"].kind == MetricKind.COUNT
    assert specs["errors"].kind == MetricKind.RATE_COUNT and specs["errors"].relative_to == "invocations"
    assert specs["conversions"].kind == MetricKind.RATE_COUNT
    assert replay.main(["--json", str(path)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["decision"] in {"hold", "rollback", "promote"} and row["decided_at"] in {0, 1, 2}


def test_module_runs_as_a_script(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(_scenario()))
    proc = subprocess.run(
        [sys.executable, "-m", "deployguard_local.replay", "--json", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["scenario"] == "s"


def _healthy_scenario(periods: int = 20) -> dict[str, object]:
    from analysis_support import make_window

    window = make_window(periods, seed=11)
    return {
        "format": "deployguard-scenario/1",
        "name": "errors-lost",
        "interval_seconds": 60,
        "intervals": periods,
        "canary_weight": window.canary_weight,
        "metrics": [
            {"id": m.spec.id, "namespace": m.spec.namespace, "name": m.spec.name, "stat": m.spec.stat,
             "baseline": m.baseline, "canary": m.canary}
            for m in window.metrics
        ],
    }  # fmt: skip


def test_null_series_is_missing_evidence_and_held(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A canary Errors query that came back empty (recorded as null) is never promoted; optional opts out."""
    document = _healthy_scenario()
    assert replay.main(["--json", str(_write(tmp_path / "full.json", document))]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "promote"
    for m in document["metrics"]:  # type: ignore[union-attr]
        if m["id"] == "errors":
            m["canary"] = None
    path = _write(tmp_path / "lost.json", document)
    assert replay.main(["--json", str(path)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["decision"] == "hold" and row["decided_at"] == 19
    assert "errors" in row["reason"] and "no datapoint for the canary in periods 0-19" in row["reason"]
    config = tmp_path / "judge.yaml"
    config.write_text(
        "metrics:\n  - {id: invocations, name: Invocations}\n  - {id: errors, name: Errors, optional: true}\n"
    )
    assert replay.main(["--json", "--config", str(config), str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "promote"


def _write(path: Path, document: dict[str, object]) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_replay_config_is_read_by_the_one_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `invoke` and `config validate` refuse, replay refuses too: misspelt keys, unset variables."""
    monkeypatch.delenv("DG_REPLAY_UNSET", raising=False)
    misspelt = tmp_path / "judge.yaml"
    misspelt.write_text("judge:\n  confidnce: 0.99\n", encoding="utf-8")
    assert replay.main(["--config", str(misspelt), str(tmp_path)]) == 2
    assert "judge.confidnce" in capsys.readouterr().err
    unset = tmp_path / "whole.yaml"
    unset.write_text("defaults:\n  judge:\n    confidence: ${DG_REPLAY_UNSET}\n", encoding="utf-8")
    assert replay.main(["--config", str(unset), str(tmp_path)]) == 2
    assert "DG_REPLAY_UNSET is not set" in capsys.readouterr().err


def test_a_recording_is_judged_over_its_own_planned_run() -> None:
    """A replayed run spreads the judge's false-alarm budget over the recording's length, as the live
    judge does over its canary plan; a configured horizon is kept."""
    from deployguard.analysis.scenario import Scenario
    from deployguard.analysis.settings import JudgeSettings

    scenario = Scenario.model_validate(
        {
            "format": "deployguard-scenario/1", "name": "short", "intervals": 12, "canary_weight": 0.1,
            "metrics": [{"id": "invocations", "name": "Invocations", "baseline": [900.0] * 12, "canary": [100.0] * 12}],
        }
    )  # fmt: skip
    assert replay.run_settings(scenario, JudgeSettings()).horizon_periods == 12
    assert replay.run_settings(scenario, JudgeSettings(horizon_periods=90)).horizon_periods == 90


def test_a_file_that_cannot_be_read_is_an_error_not_an_invalid_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from deployguard_local import cli

    missing = tmp_path / "missing.json"
    assert cli.main(["replay", str(missing)]) == 2  # the README's table: an unreadable file is 2
    said = capsys.readouterr().err.strip()
    assert said == f"deployguard replay: file {missing}: cannot read: No such file or directory"
    good = _write(tmp_path / "good.json", _scenario())
    assert cli.main(["replay", "--json", str(good), str(missing)]) == 2  # the readable one is still judged
    out, err = capsys.readouterr()
    assert json.loads(out)["scenario"] == "s" and str(missing) in err
    bad = _write(tmp_path / "bad.json", _scenario(canary_weight=2))
    assert cli.main(["replay", str(good), str(bad)]) == 1  # an invalid scenario stays a negative answer
    assert cli.main(["replay", str(bad), str(missing)]) == 2
