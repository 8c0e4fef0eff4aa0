"""A p99 configured without a p50 of the same metric (issue 10 audit: 12 of 12 canaries 4x slower at 20
calls a minute held "no period with data from both versions yet"): the reader reads an implicit p50
beside it, which the judge judges the p99 through at low traffic. Read from the embedded CloudWatch."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from deployguard import clock
from deployguard.analysis.judge import judge_canary
from deployguard.aws.cloudwatch import MetricsReader, put_metric_values
from deployguard.config import parse_config
from deployguard.models import Decision, Deployment, DeploymentStatus, LambdaTarget

CONFIG = """
defaults:
  judge:
    metrics:
      - {id: invocations, name: Invocations, stat: Sum, unit: Count}
      - {id: errors, name: Errors, stat: Sum, unit: Count}
      - {id: duration_p99, name: Duration, stat: p99, unit: Milliseconds}
"""
TARGET = LambdaTarget(function_name="checkout-api", alias="live", stable_version="1", new_version="2")


def _dims(version: str) -> dict[str, str]:
    return {"FunctionName": "checkout-api", "Resource": "checkout-api:live", "ExecutedVersion": version}


def test_the_settings_read_an_implicit_p50_that_is_not_a_configured_metric() -> None:
    settings = parse_config(CONFIG, "dg.yaml").defaults.judge
    assert [m.id for m in settings.metrics] == ["invocations", "errors", "duration_p99"]
    assert [(m.id, m.stat, m.name, m.kind.value) for m in settings.read_metrics[3:]] == [
        ("duration_p50", "p50", "Duration", "latency")
    ]
    both = parse_config(CONFIG + "      - {id: lat_median, name: Duration, stat: p50}\n", "dg.yaml").defaults.judge
    assert both.read_metrics == both.metrics  # a lower percentile configured: nothing added


def test_a_4x_slower_canary_at_20_calls_a_minute_with_only_a_p99_configured_fails(embedded: Any) -> None:
    settings = parse_config(CONFIG, "dg.yaml").defaults.judge.for_run(20)
    start = clock.now()
    deployment = Deployment(
        deployment_id="d-p99", service="checkout-api", environment="prod", version="2", target=TARGET,
        status=DeploymentStatus.IN_PROGRESS, started_at=start, canary_weight=0.1,
    )  # fmt: skip
    for minute in range(12):
        at = start + timedelta(minutes=minute, seconds=30)
        for version, calls, ms in (("1", 180, 100.0), ("2", 20, 400.0)):
            wobble = 1.0 + 0.03 * ((minute * 7 + int(version)) % 5 - 2)  # a few % from minute to minute
            put_metric_values("AWS/Lambda", "Invocations", _dims(version), at, "Count", value=calls)
            put_metric_values("AWS/Lambda", "Errors", _dims(version), at, "Count", value=0)
            values = [ms * wobble * f for f in (0.6, 0.8, 1.0, 1.25, 1.7)]
            put_metric_values("AWS/Lambda", "Duration", _dims(version), at, "Milliseconds", values=values,
                              counts=[calls * 0.1, calls * 0.2, calls * 0.4, calls * 0.2, calls * 0.1])  # fmt: skip
    embedded.clock.advance(12 * 60)

    window = MetricsReader().canary_windows([(deployment, settings.read_metrics)], clock.now())["d-p99"]
    assert [m.spec.id for m in window.metrics] == ["invocations", "errors", "duration_p99", "duration_p50"]
    verdict = judge_canary(window, settings)
    assert verdict.decision == Decision.FAILING, verdict.summary
    assert verdict.summary.startswith("canary worse: duration_p50: canary") and "%" in verdict.summary
    assert any(r.metric_id == "duration_p99" and "judged through duration_p50" in r.message for r in verdict.reasons)

    # what the configured metrics alone gave: a p99 never read at 20 calls a minute, the canary never judged
    alone = MetricsReader().canary_windows([(deployment, settings.metrics)], clock.now())["d-p99"]
    verdict = judge_canary(alone, settings)
    assert verdict.decision == Decision.INCONCLUSIVE
    assert "duration_p99: too few invocations per period for a p99" in verdict.summary
