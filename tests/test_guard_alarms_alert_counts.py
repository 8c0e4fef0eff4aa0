"""The dashboard's "Alerts raised and incident pages" widget counts every alert raised and every page
sent, wherever it happens (the canary's tasks, the recorder, the assessor, the router's outbox), not only
the scheduled assessor's. A regressing canary through the canary state machine on the embedded AWS,
configured like the demo (alert routes, escalation to local receivers); the EMF records every function
printed read back and summed as CloudWatch would, against what the incidents store says."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "integration" / "alerts"))
from alert_rules_support import ShopBehaviour, run_canary, service_config

from deployguard.alerts.models import AlertStatus
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.incidents.repository import IncidentRepository
from deployguard.models import LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows import runtime
from deployguard_local.codedeploy import create_lambda_deployment, put_state_change
from deployguard_local.emulator import REPO_ROOT, EmbeddedAws, _environment, sample_handler
from deployguard_local.receivers import LocalReceivers, local_receivers
from deployguard_local.traffic import VersionBehaviour


@contextmanager
def _stack(tmp: Path, services: list[str]) -> Iterator[tuple[EmbeddedAws, LocalReceivers]]:
    """The embedded AWS configured like the demo for these services (alert_rules_support.shop_stack), its
    functions' metrics and logs on, as deployed."""
    config = yaml.safe_load((REPO_ROOT / "examples" / "demo.yaml").read_text(encoding="utf-8"))
    config["services"] = {name: service_config(name) for name in services}
    path = tmp / "deployguard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with local_receivers(echo=None) as receivers:
        env = {f"DEMO_{kind.upper()}_URL": url for kind, url in receivers.urls.items()}
        with _environment(env), EmbeddedAws(config_file=path, quiet=False) as aws:
            yield aws, receivers


def _sums(output: str) -> dict[tuple[str, tuple[str, ...]], float]:
    """(metric, dimension names) -> sum over the EMF records printed."""
    sums: dict[tuple[str, tuple[str, ...]], float] = {}
    for line in output.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        record = json.loads(line)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for dimensions in directive["Dimensions"]:
                for metric in directive["Metrics"]:
                    values = record[metric["Name"]]
                    key = (metric["Name"], tuple(dimensions))
                    sums[key] = sums.get(key, 0.0) + sum(values if isinstance(values, list) else [values])
    return sums


def test_every_alert_raised_and_every_page_is_counted_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runtime.metrics.clear_metrics()
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # as deployed: the functions print their EMF
    regressing = VersionBehaviour(regress_at=0, regressed_error_rate=0.10, regressed_p99_ms=3000)
    with _stack(tmp_path, ["shop-app", "shop-cart"]) as (aws, _receivers):
        aws.follow_schedules(["AssessorFunction"])  # the minute tick: escalation pages
        capsys.readouterr()
        # a canary the judge rolls back (alerts raised by the canary's tasks; its incidents stop escalating)
        execution, _ = run_canary(aws, "shop-app", regressing, ShopBehaviour())
        # a CodeDeploy deployment that fails with its alias still split (the recorder's rollback.failed: an
        # emergency incident, nothing rolled back, paged at once and again by the minute tick's escalation)
        versions = aws.deploy_sample_function("shop-cart", "live", sample_handler)
        target = LambdaTarget(function_name="shop-cart", alias="live", stable_version=versions[0],
                              new_version=versions[1])  # fmt: skip
        failed_id = create_lambda_deployment(target, "shop-cart", "live")
        put_state_change(failed_id, "shop-cart", "live", "START")
        aws.invoker.drain()
        LambdaTrafficShifter(target).shift(0.1)
        DeploymentRepository().update_deployment(failed_id, lambda d: setattr(d, "canary_weight", 0.1))
        put_state_change(failed_id, "shop-cart", "live", "FAILURE")
        aws.invoker.drain()
        assert aws.clock is not None
        aws.clock.advance(30 * 60)  # the incidents' escalation steps come due
        aws.invoker.drain()
        captured = capsys.readouterr()
        incidents = IncidentRepository(DeploymentRepository())
        fired = [a for d in ("dep-shop-app", failed_id) for a in incidents.alerts(d) if a.status == AlertStatus.FIRED]
        paged = sum(i.escalation.pages for i in incidents.recent(limit=500))
    assert execution["status"] == "SUCCEEDED"
    sums = _sums(captured.out + "\n" + captured.err)
    assert len(fired) >= 3 and paged >= 2  # canary-issue, high-error-rate, rollback-failed ...; paged twice
    # the widget's series: namespace DeployGuard, dimension service only
    assert sums.get(("AlertsRaised", ("service",)), 0) == len(fired)
    assert sums.get(("IncidentPages", ("service",)), 0) == paged
    assert not [k for k in sums if k[0] in ("AlertsRaised", "IncidentPages") and k[1] != ("service",)], sums
