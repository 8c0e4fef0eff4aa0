"""A regression end to end on the embedded AWS: alert, incident, rollback, paging, ack, resolve."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from incident_support_it import canary_in_flight, engine, failing_assessment, healthy_assessment

from deployguard.alerts.models import AlertStatus
from deployguard.alerts.settings import AlertingSettings
from deployguard.aws import clients
from deployguard.incidents.models import IncidentStatus
from deployguard.models import DeploymentEvent, DeploymentStatus, EventType
from deployguard.storage.repository import DeploymentRepository
from deployguard_local import incidents_cli


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = incidents_cli.main([*argv, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)  # the functions' logs go to stderr: stdout holds the answer alone


def test_regression_rolls_back_its_incidents_page_no_more_and_a_person_resolves_them(
    embedded: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment, shifter = canary_in_flight(embedded)
    eng = engine()
    repo = DeploymentRepository()

    started = time.monotonic()
    alerts = eng.on_assessment(deployment, failing_assessment(deployment))
    alias = shifter.current()
    elapsed = time.monotonic() - started
    # emergency rollback: 100% stable within 30 s of the decision, on the real boto3 path
    assert alias.weight_of(deployment.target.stable_version) == 1.0  # type: ignore[union-attr]
    assert elapsed < 30.0
    done = [e for e in repo.audit_trail(deployment.deployment_id) if e.action == "remediation_succeeded"]
    assert len(done) == 1 and done[0].details["seconds_since_decision"] < 30.0
    assert repo.get_deployment(deployment.deployment_id).status == DeploymentStatus.ROLLED_BACK

    assert {a.rule for a in alerts} == {
        "canary-issue",
        "high-error-rate",
        "critical-health-score",
        "minimum-health-score",
    }
    assert all(a.status == AlertStatus.FIRED for a in alerts)
    listed = _cli(capsys, "list")
    assert {i["group"] for i in listed} == {"canary", "health"}
    canary = next(i for i in listed if i["group"] == "canary")
    health = next(i for i in listed if i["group"] == "health")
    # rolled back before the first page was due: nobody is paged (the alert event reached its routes;
    # PagerDuty resolved on rollback.completed, and a page would open it again)
    assert canary["rules"] == ["canary-issue", "high-error-rate"] and canary["escalation"]["pages"] == 0
    assert canary["escalation"]["stopped_reason"] == f"deployment {deployment.deployment_id} rolled back"

    # nobody answers: still no page, 120 s later or ever
    embedded.clock.advance(120)
    assert eng.on_tick().pages == []

    acked = _cli(capsys, "ack", canary["incident_id"][:10], "--by", "alice", "--notes", "on it")
    assert acked["status"] == "acknowledged" and acked["time_to_acknowledge_seconds"] == 120

    embedded.clock.advance(300)
    assert eng.on_tick().pages == []
    assert eng.incident_store.get(health["incident_id"]).status == IncidentStatus.OPEN  # open, quiet: a person's

    resolved = _cli(capsys, "resolve", canary["incident_id"], "--by", "alice", "--notes", "rolled back; fix in 2.1")
    assert resolved["status"] == "resolved" and resolved["time_to_resolve_seconds"] == 420

    shown = _cli(capsys, "show", canary["incident_id"])
    timeline = [t["action"] for t in shown["incident"]["timeline"]]
    assert timeline[0] == "opened" and timeline[-2:] == ["acknowledged", "resolved"]
    assert "alert_joined" in timeline and "escalation_stopped" in timeline and "paged" not in timeline
    assert {a["rule"] for a in shown["alerts"]} == {"canary-issue", "high-error-rate"}

    trail = [e.action for e in repo.audit_trail(deployment.deployment_id)]
    for step in (
        "alert_raised",
        "incident_opened",
        "remediation_attempt",
        "remediation_succeeded",
        "incident_acknowledged",
        "incident_resolved",
    ):
        assert step in trail, step
    assert "incident_paged" not in trail
    kinds = [e.details.get("kind") for e in repo.events(deployment.deployment_id) if e.event_type == EventType.ALERT]
    assert kinds.count("page") == 0 and "alert" in kinds and "incident_acknowledged" in kinds

    history = _cli(capsys, "history")
    assert history["stats"]["resolved"] == 1 and history["stats"]["mean_time_to_acknowledge_seconds"] == 120

    # the text output is a readable table
    assert incidents_cli.main(["list", "--all"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split()[:3] == ["ID", "STATUS", "SEVERITY"]


def test_repeat_alerts_join_and_respect_the_cooldown_then_clear_and_auto_resolve(embedded: Any) -> None:
    deployment, _ = canary_in_flight(embedded)
    eng = engine(AlertingSettings.model_validate({"incidents": {"auto_resolve_after_seconds": 300}}))
    eng.on_assessment(deployment, failing_assessment(deployment))
    embedded.clock.advance(60)
    again = eng.on_assessment(deployment, failing_assessment(deployment))
    assert {a.status for a in again} == {AlertStatus.SUPPRESSED_COOLDOWN}
    open_ = eng.incident_store.open_incidents_of(deployment.deployment_id)
    assert len(open_) == 2
    for _ in range(2):
        embedded.clock.advance(60)
        assert eng.on_assessment(deployment, healthy_assessment(deployment)) == []
    embedded.clock.advance(240)
    report = eng.on_tick()
    assert sorted(report.resolved) == sorted(i.incident_id for i in open_)
    for incident in open_:
        stored = eng.incident_store.get(incident.incident_id)
        assert stored.status == IncidentStatus.RESOLVED and stored.auto_resolved
        assert stored.resolved_by == "deployguard:auto-resolve"


def test_failed_rollback_event_opens_an_emergency_incident(embedded: Any) -> None:
    deployment, _ = canary_in_flight(embedded)
    eng = engine()
    event = DeploymentEvent(
        event_type=EventType.ROLLBACK_FAILED,
        deployment_id=deployment.deployment_id,
        service=deployment.service,
        version=deployment.version,
        environment=deployment.environment,
        title="Rollback Failed",
    )
    alerts = eng.on_event(event)
    assert [a.rule for a in alerts] == ["rollback-failed"]
    incident = eng.incident_store.get(alerts[0].incident_id or "")
    assert incident.escalation.policy == "emergency" and incident.escalation.pages == 1
    assert eng.on_event(alerts_event := event.model_copy(update={"event_type": EventType.ALERT})) == []
    assert alerts_event.event_type == EventType.ALERT


def test_approval_answered_from_the_cli(embedded: Any, capsys: pytest.CaptureFixture[str]) -> None:
    deployment, shifter = canary_in_flight(embedded)
    eng = engine()
    metrics = {"response_time_p99": 900.0}
    baseline = {"response_time_p99": 300.0}
    healthy = healthy_assessment(deployment)
    alerts = eng.on_assessment(deployment, healthy, metrics, baseline)
    assert [a.rule for a in alerts] == ["performance-degradation"]
    assert shifter.current().additional_weights  # approval mode: nothing moved yet
    approvals = _cli(capsys, "approvals")
    assert len(approvals) == 1 and approvals[0]["action"] == "rollback"
    dry = _cli(capsys, "remediate", alerts[0].incident_id or "", "--by", "bob", "--dry-run")
    assert dry[0]["outcome"] == "dry_run" and dry[0]["plan"]["calls"]
    assert shifter.current().additional_weights
    # the approval waits in the approval state machine on a task token; the CLI's answer resumes it
    execution_arn = (
        embedded.ref("ApprovalStateMachine").replace(":stateMachine:", ":execution:")
        + ":"
        + approvals[0]["approval_id"]
    )
    sfn = clients.client("stepfunctions")
    _wait_for(lambda: sfn.get_execution_history(executionArn=execution_arn)["events"][-1]["type"] == "TaskSubmitted")
    assert sfn.describe_execution(executionArn=execution_arn)["status"] == "RUNNING"
    _cli(capsys, "approve", approvals[0]["approval_id"], "--by", "bob")
    _wait_for(lambda: sfn.describe_execution(executionArn=execution_arn)["status"] != "RUNNING")
    assert sfn.describe_execution(executionArn=execution_arn)["status"] == "SUCCEEDED"
    assert eng.on_tick().remediations == []  # the state machine ran it; the tick does not run it again
    assert shifter.current().weight_of(deployment.target.stable_version) == 1.0  # type: ignore[union-attr]
    actions = [e.action for e in DeploymentRepository().audit_trail(deployment.deployment_id)]
    assert "remediation_approved" in actions and "remediation_succeeded" in actions


def _wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_long_running_deployment_alerts_from_the_tick(embedded: Any) -> None:
    deployment, _ = canary_in_flight(embedded)
    repo = DeploymentRepository()

    def expect(d: Any) -> None:
        d.expected_duration_seconds = 600

    repo.update_deployment(deployment.deployment_id, expect)
    eng = engine()
    embedded.clock.advance(899)
    assert [a.rule for a in eng.on_tick().alerts] == []
    embedded.clock.advance(2)
    assert [a.rule for a in eng.on_tick().alerts] == ["long-running-deployment"]
    embedded.clock.advance(60)
    assert [a.status for a in eng.on_tick().alerts] == [AlertStatus.SUPPRESSED_COOLDOWN]


def test_cli_finds_the_table_from_the_stack_outputs(embedded: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from deployguard.aws import clients

    table = embedded.ref("DeploymentsTable")
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"DeploymentsTableName": {"Value": table}},
    }
    clients.client("cloudformation").create_stack(StackName="deployguard-prod", TemplateBody=json.dumps(template))
    deployment, _ = canary_in_flight(embedded)
    engine().on_assessment(deployment, failing_assessment(deployment))
    env_table = os.environ.pop("DEPLOYMENTS_TABLE")
    try:
        listed = _cli(capsys, "list", "--stack", "deployguard-prod")
        assert len(listed) == 2
        assert incidents_cli.main(["list"]) == 2
        assert "name the stack (--stack NAME) or the table" in capsys.readouterr().err
        assert incidents_cli.main(["list", "--stack", "no-such-stack"]) == 2
        assert "stack no-such-stack" in capsys.readouterr().err
    finally:
        os.environ["DEPLOYMENTS_TABLE"] = env_table
    assert incidents_cli.main(["ack", "inc-nope", "--by", "alice"]) == 2
    assert "incident inc-nope not found" in capsys.readouterr().err
