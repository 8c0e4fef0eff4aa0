"""`deployguard bench scale` reports its figures per look (one deployment assessed in a cycle: each canary
every cycle, a monitored deployment only when its look is due), and says so, in its printout and in the
README; not per deployment per cycle, which the monitored deployments not due in a cycle would lower."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployguard_local import bench_scale

ROOT = Path(__file__).resolve().parents[2]


def test_the_figures_are_per_look_and_the_printout_and_readme_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_scale, "cycles_for", lambda deployments, monitored: 3)  # not the hundreds of a run
    monkeypatch.setattr(bench_scale, "reference_cpu_ms", lambda: 1.0)  # the CPU reference: not what is checked
    run = bench_scale.measure(deployments=2, age_minutes=5, monitored=4)
    deployment_cycles = (run["deployments"] + run["monitored"]) * run["cycles"]
    assert 0 < run["assessments"] < deployment_cycles  # monitored deployments are not looked at every cycle
    calls = sum(run["calls_by_operation"].values())  # each per look (rounded to 4 places)
    assert run["calls_per_deployment"] == pytest.approx(calls, abs=0.01)
    printed = {"runs": [run], "monthly_cost_usd": {}, "monthly_cost_breakdown_usd": {}, "assumptions": {},
               "cold_import": {"repeats": 1, "boto3_ms": 1.0, "handlers": {}}}  # fmt: skip
    header = bench_scale.report(printed).splitlines()[0]
    assert "per look" in header and "per deployment per cycle" not in header
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "per deployment per cycle" not in readme
    assert "What it reports, per look (one deployment assessed in a\ncycle" in readme
