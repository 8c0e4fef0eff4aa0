"""CodeDeploy's deployment configuration sets the run the judge spreads its false-alarm budget
over, for canaries CodeDeploy drives: recorded from the real recorder function on the embedded
AWS (a custom configuration read with GetDeploymentConfig, CodeDeploy's predefined ones by name),
then used by the assessor's settings. The post-traffic hook's single look spreads it over its own
window's periods instead, whatever the plan."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from tick_support import minute_tick

from deployguard.analysis.judge import judge_canary, state_fits
from deployguard.aws import clients
from deployguard.aws.cloudwatch import MetricsReader
from deployguard.aws.codedeploy import predefined_seconds, routing_seconds
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.config import load_config
from deployguard.models import Decision, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.assessor import judge_settings
from deployguard_local.codedeploy import LEDGER, create_lambda_deployment, simulate_embedded_rollout, state_change_event
from deployguard_local.emulator import EmbeddedAws, sample_handler
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour

ROOT = Path(__file__).resolve().parents[3]


def _record(embedded: Any, name: str, config_name: str, traffic: bool = False) -> Any:
    versions = embedded.deploy_sample_function(name, "live", sample_handler)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    if traffic:
        source = LambdaTrafficSource(name, "live", 3000, {v: VersionBehaviour() for v in versions}, seed=7)
        embedded.clock.listeners.append(source.on_clock)
    deployment_id = create_lambda_deployment(target, name, "live", config_name=config_name)
    payload, errored = embedded.invoke(
        "DeploymentRecorderFunction", state_change_event(deployment_id, name, "live", "START")
    )
    assert not errored, payload
    return DeploymentRepository().get_deployment(deployment_id)


def test_a_custom_configuration_sets_the_judges_horizon(embedded: Any) -> None:
    codedeploy = clients.client("codedeploy")
    codedeploy.create_deployment_config(
        deploymentConfigName="Guarded.Canary10Percent40Minutes",
        computePlatform="Lambda",
        trafficRoutingConfig={
            "type": "TimeBasedCanary",
            "timeBasedCanary": {"canaryPercentage": 10, "canaryInterval": 40},
        },
    )
    record = _record(embedded, "horizon-custom", "Guarded.Canary10Percent40Minutes", traffic=True)
    assert record.traffic_shift_seconds == 40 * 60
    assert LEDGER.config_reads.count("Guarded.Canary10Percent40Minutes") == 1
    assert isinstance(record.target, LambdaTarget)
    LambdaTrafficShifter(record.target).shift(0.1)  # CodeDeploy's 10%
    embedded.clock.advance(180)
    payload = minute_tick(embedded)
    assert record.deployment_id in {a["deployment_id"] for a in payload["assessed"]}
    cursor = DeploymentRepository().get_deployment(record.deployment_id).last_assessment
    assert cursor is not None and cursor.judge_state is not None

    config = load_config(embedded.config_file)
    settings = judge_settings(config, record, 60)
    assert settings.horizon_periods == 40
    # the assessor judged it over CodeDeploy's 40 minutes, not over the service's own canary plan
    plan = config.service(record.service).judge
    assert state_fits(cursor.judge_state["state"], settings, plan.metrics)
    assert not state_fits(cursor.judge_state["state"], plan, plan.metrics)
    assert "horizon_periods" not in settings.model_fields_set  # derived: a replay or copy sets its own
    assert config.service(record.service).judge.horizon_periods != 40  # the service's own plan is untouched
    # one a minute judged over 40 minutes: the threshold of a 40-period run, ln(40 / 15) above the plan's
    assert settings.horizon_penalty(0) - config.service(record.service).judge.horizon_penalty(0) == pytest.approx(
        0.9808, abs=1e-3
    )


def test_predefined_configurations_are_told_by_name_and_a_failed_read_keeps_the_plan(
    embedded: Any, caplog: pytest.LogCaptureFixture
) -> None:
    reads = len(LEDGER.config_reads)
    linear = _record(embedded, "horizon-linear", "CodeDeployDefault.LambdaLinear10PercentEvery2Minutes")
    assert linear.traffic_shift_seconds == 9 * 2 * 60  # 10% at once, 100% nine two-minute steps later
    assert len(LEDGER.config_reads) == reads  # no call for CodeDeploy's own configurations

    with caplog.at_level(logging.WARNING):
        unknown = _record(embedded, "horizon-unknown", "Guarded.NeverCreated")
    assert unknown.traffic_shift_seconds is None
    assert "DeploymentConfigDoesNotExistException" in caplog.text
    config = load_config(embedded.config_file)
    assert judge_settings(config, unknown, 60) == config.service(unknown.service).judge

    # a configuration it cannot read (no percentage) is no horizon either: the record is still made
    clients.client("codedeploy").create_deployment_config(
        deploymentConfigName="Guarded.Linear", computePlatform="Lambda",
        trafficRoutingConfig={"type": "TimeBasedLinear", "timeBasedLinear": {"linearInterval": 1}},
    )  # fmt: skip
    assert _record(embedded, "horizon-malformed", "Guarded.Linear").traffic_shift_seconds is None


@pytest.mark.parametrize(
    ("name", "seconds"),
    [
        ("CodeDeployDefault.LambdaCanary10Percent5Minutes", 300),
        ("CodeDeployDefault.LambdaCanary10Percent30Minutes", 1800),
        ("CodeDeployDefault.LambdaLinear10PercentEvery1Minute", 540),
        ("CodeDeployDefault.LambdaLinear10PercentEvery10Minutes", 5400),
        ("CodeDeployDefault.ECSCanary10Percent15Minutes", 900),
        ("CodeDeployDefault.ECSLinear10PercentEvery3Minutes", 1620),
        ("CodeDeployDefault.LambdaAllAtOnce", None),
        ("CodeDeployDefault.OneAtATime", None),
        ("MyCompany.Canary", None),
    ],
)
def test_predefined_seconds(name: str, seconds: int | None) -> None:
    assert predefined_seconds(name) == seconds


def test_routing_seconds_of_custom_configurations() -> None:
    linear = {"type": "TimeBasedLinear", "timeBasedLinear": {"linearPercentage": 30, "linearInterval": 5}}
    assert routing_seconds(linear) == 3 * 5 * 60  # 30% at once, then 60, 90 and 100% every 5 minutes
    assert routing_seconds({"type": "AllAtOnce"}) is None and routing_seconds({}) is None
    with pytest.raises(ValueError):
        routing_seconds({"type": "TimeBasedLinear", "timeBasedLinear": {"linearPercentage": 0, "linearInterval": 1}})


def test_the_post_traffic_hook_judges_its_window_over_the_windows_own_periods(tmp_path: Path) -> None:
    """The AfterAllowTraffic hook's single look spreads the false-alarm budget over its window's periods (6 here:
    five minutes at 10%, one at 100%), not over the service's canary plan (three steps of an hour: 180 periods).
    A canary slightly worse than its stable version (1.9% errors against 0.5%, seeded traffic) is failing for a
    6-period look and not for a 180-period one: the hook, run by CodeDeploy's rollout through the real hook
    function on a recorded deployment, fails it."""
    config_text = yaml.safe_load((ROOT / "examples" / "deployguard.yaml").read_text(encoding="utf-8"))
    config_text["services"]["slow-plan-api"] = {
        "function_name": "slow-plan-api",
        "canary": {"steps": [10, 25, 50], "step_duration_seconds": 3600, "assessment_interval_seconds": 60},
    }
    config_file = tmp_path / "deployguard.yaml"
    config_file.write_text(yaml.safe_dump(config_text), encoding="utf-8")
    with EmbeddedAws(config_file=config_file) as aws:
        versions = aws.deploy_sample_function("slow-plan-api", "live", sample_handler)
        behaviours = {versions[0]: VersionBehaviour(), versions[1]: VersionBehaviour(error_rate=0.019)}
        aws.clock.listeners.append(LambdaTrafficSource("slow-plan-api", "live", 3000, behaviours, seed=1).on_clock)
        target = LambdaTarget(function_name="slow-plan-api", alias="live", stable_version=versions[0],
                              new_version=versions[1])  # fmt: skip
        result = simulate_embedded_rollout(aws, target, application="slow-plan-api", assessor_schedule=False)
        assert result.hooks == [("BeforeAllowTraffic", "Succeeded"), ("AfterAllowTraffic", "Failed")]
        repository = DeploymentRepository()
        record = repository.get_deployment(result.deployment_id)
        [hooks_look] = repository.assessments(record.deployment_id)  # the hook's own judgement, the only one
        assert hooks_look.verdict.decision == Decision.FAILING

        # the window the hook read (its look's time, its post_traffic_window_seconds), judged both ways
        service = load_config(config_file).service(record.service)
        plan = service.judge
        assert plan.horizon_periods == 180  # the service's canary plan: 3 steps of 3600 s, a look a minute
        window_start = max(
            record.started_at, hooks_look.at - timedelta(seconds=service.hooks.post_traffic_window_seconds)
        )
        windowed = record.model_copy(update={"started_at": window_start})
        window = MetricsReader().canary_windows([(windowed, plan.metrics)], hooks_look.at, 60)[record.deployment_id]
        assert window.periods == 6
        over_the_window = judge_canary(window, plan.for_run(window.periods))
        over_the_plan = judge_canary(window, plan)
    assert over_the_window.decision == Decision.FAILING and over_the_plan.decision != Decision.FAILING
    assert hooks_look.verdict.summary == over_the_window.summary  # the hook judged over its window's periods
    assert hooks_look.verdict.reasons == over_the_window.reasons
