"""`deployguard deployments|status` read what `make demo` left (--local), as a new user would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from demo_support import DemoRun, local
from local_control import run

from deployguard.models import Deployment, DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard_local import local_state
from deployguard_local.emulator import EmbeddedAws


def test_list_filters_and_pages_what_the_demo_left(demo_run: DemoRun, capsys: pytest.CaptureFixture[str]) -> None:
    ids = demo_run.deployment_ids()
    code, out, _ = run(capsys, "deployments", "list", *local(demo_run), "--json")
    listed = json.loads(out)
    assert code == 0 and listed["next_cursor"] is None
    started = [d["started_at"] for d in listed["items"]]
    assert started == sorted(started, reverse=True)
    assert set(ids.values()) <= {d["deployment_id"] for d in listed["items"]}

    code, out, _ = run(capsys, "deployments", "list", *local(demo_run), "--status", "rolled_back", "--json")
    rolled = {d["deployment_id"] for d in json.loads(out)["items"]}
    assert {ids["regression-midway"], ids["codedeploy-canary"], ids["ecs-blue-green"]} <= rolled
    assert ids["healthy-release"] not in rolled

    code, out, _ = run(capsys, "deployments", "list", *local(demo_run), "--limit", "2", "--json")
    first = json.loads(out)
    code, out, _ = run(capsys, "deployments", "list", *local(demo_run), "--limit", "2", "--cursor",
                       first["next_cursor"], "--json")  # fmt: skip
    second = json.loads(out)
    paged = [d["deployment_id"] for d in first["items"] + second["items"]]
    assert paged == [d["deployment_id"] for d in listed["items"][:4]]

    code, out, _ = run(capsys, "deployments", "list", *local(demo_run), "--service", "payments-api")
    assert code == 0 and ids["regression-midway"] in out and ids["healthy-release"] not in out


def test_show_prints_the_timeline_with_reasons(demo_run: DemoRun, capsys: pytest.CaptureFixture[str]) -> None:
    regression = demo_run.deployment_ids()["regression-midway"]
    code, out, _ = run(capsys, "deployments", "show", regression[:12], *local(demo_run), "--no-notifications")
    assert code == 0
    for expected in ("traffic 25% to the new version", "failing at 25%", "errors: canary", "alert canary-issue",
                     "opened", "remediation_succeeded", "acknowledged by alice", "rolled_back"):  # fmt: skip
        assert expected in out, expected
    code, out, _ = run(capsys, "deployments", "show", regression, *local(demo_run), "--json")
    history = json.loads(out)
    assert history["schema"] == "deployguard-history/1" and history["outcome"]["exit_code"] == 1
    # the export validates against the documented schema, an incident's computed times to acknowledge and resolve in
    from jsonschema import Draft202012Validator

    documented = json.loads((Path(__file__).parents[2] / "docs" / "history-schema.json").read_text(encoding="utf-8"))
    problems = [f"{list(e.absolute_path)}: {e.message}" for e in Draft202012Validator(documented).iter_errors(history)]
    assert problems == [] and "time_to_resolve_seconds" in history["incidents"][0], problems[:3]
    assert [s["weight"] for s in history["traffic"]] == [0.0, 0.1, 0.25, 0.0]
    assert history["incidents"] and history["notifications"] and history["remediation"]


def test_status_is_a_ci_gate(demo_run: DemoRun, capsys: pytest.CaptureFixture[str]) -> None:
    ids = demo_run.deployment_ids()
    assert run(capsys, "status", ids["healthy-release"], *local(demo_run), "--wait")[0] == 0
    code, out, _ = run(capsys, "status", ids["ecs-blue-green"], *local(demo_run), "--wait", "--json")
    assert code == 1 and json.loads(out)["state"] == "rolled_back"
    code, _, err = run(capsys, "status", "dg-nope", *local(demo_run))
    assert code == 4 and "deployment dg-nope not found" in err
    code, _, err = run(capsys, "deployments", "list", *local(demo_run), "--since", "last week")
    assert code == 4 and "since" in err


@pytest.fixture
def running_state(tmp_path: Path) -> Path:
    """A saved local state holding a deployment still in progress and one held for a person."""
    with EmbeddedAws(storage_only=True) as aws:
        repository = DeploymentRepository(aws.ref("DeploymentsTable"))
        target = LambdaTarget(function_name="orders", alias="live", stable_version="1", new_version="2")
        for deployment_id, status, decision in (("dg-running", DeploymentStatus.IN_PROGRESS, None),
                                                ("dg-held", DeploymentStatus.STOPPED, "held")):  # fmt: skip
            repository.create_deployment(Deployment(deployment_id=deployment_id, service="orders", version="2",
                                                    environment="production", target=target, status=status,
                                                    decision=decision))  # fmt: skip
        local_state.save(aws, tmp_path)
    return tmp_path


def test_status_wait_on_the_local_state_does_not_wait(running_state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = ["--local", "--state-dir", str(running_state)]
    code, out, _ = run(capsys, "status", "dg-running", *where, "--wait", "--timeout", "300", "--interval", "60")
    assert code == 3 and "not waited" in out and "timed out" not in out  # nothing changes a saved state
    assert run(capsys, "status", "dg-held", *where)[0] == 2
    code, out, _ = run(capsys, "deployments", "watch", "dg-running", *where, "--timeout", "120", "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 3 and lines[0]["kind"] == "traffic" and lines[-1]["state"] == "running"


def test_missing_local_state_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "deployments", "list", "--local", "--state-dir", str(tmp_path))
    assert code == 4 and "run `make demo` first" in err


def test_summary_counts_what_the_demo_decided(demo_run: DemoRun, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "summary", "--since", "1d", *local(demo_run), "--json")
    summary = json.loads(out)
    assert code == 0 and summary["schema"] == "deployguard-summary/1"
    current = summary["current"]
    ids = demo_run.deployment_ids()
    assert current["deployments"] == len(ids) and current["rolled_back"] == 3  # regression, CodeDeploy, ECS
    # CodeDeploy's own rollback deployments put the old version back: no release of their own
    assert current["rollback_deployments"] >= 1 and current["succeeded"] == 1 and current["success_rate"] == 0.25
    assert sorted(summary["failed_deployments"]) == sorted(ids[r] for r in ids if r != "healthy-release")
    assert current["median_time_to_detect_seconds"] > 0 and summary["previous"]["deployments"] == 0
    incidents = summary["incidents"]
    assert incidents["incidents"] >= incidents["resolved"] >= 2  # the demo resolves the regression's incidents
    # deployment-failed: every rolled-back rollout raises it (the ECS one through its rollback.completed), and a
    # rollout that announces both its rollback and its failure counts the second, suppressed by the cooldown
    noisiest = dict(summary["noisiest_rules"])
    assert list(noisiest.values()) == sorted(noisiest.values(), reverse=True)
    assert next(iter(noisiest)) == "deployment-failed" and noisiest["deployment-failed"] >= current["rolled_back"]
    assert noisiest["canary-issue"] >= 1
    code, out, _ = run(capsys, "summary", "--since", "1d", *local(demo_run), "--markdown")
    assert code == 0 and "| change failure rate |" in out and "### By service" in out


def test_stack_resolves_the_table_from_its_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    """--stack NAME reads DeploymentsTableName from the CloudFormation stack's outputs (moto's CloudFormation)."""
    from deployguard.aws import clients

    with EmbeddedAws(storage_only=True) as aws:
        table = aws.ref("DeploymentsTable")
        target = LambdaTarget(function_name="orders", alias="live", stable_version="1", new_version="2")
        DeploymentRepository(table).create_deployment(
            Deployment(deployment_id="dg-on-aws", service="orders", version="2", environment="production",
                       target=target, status=DeploymentStatus.SUCCEEDED, decision="promoted")
        )  # fmt: skip
        template = {
            "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "marker"}}},
            "Outputs": {"DeploymentsTableName": {"Value": table}, "ReportsBucketName": {"Value": "reports"}},
        }
        clients.client("cloudformation").create_stack(StackName="deployguard", TemplateBody=json.dumps(template))
        code, out, _ = run(capsys, "deployments", "list", "--stack", "deployguard", "--json")
        assert code == 0 and [d["deployment_id"] for d in json.loads(out)["items"]] == ["dg-on-aws"]
        assert run(capsys, "status", "dg-on-aws", "--stack", "deployguard")[0] == 0
        code, _, err = run(capsys, "deployments", "list", "--stack", "nope")
        assert code == 4 and "stack nope" in err
        # AWS refuses: exit 4, never one of the gate's codes
        code, _, err = run(capsys, "status", "dg-on-aws", "--table", "no-such-table", "--wait")
        assert code == 4 and "ResourceNotFoundException" in err


def test_incidents_read_the_demo_state_with_the_same_connection_options(
    demo_run: DemoRun, capsys: pytest.CaptureFixture[str]
) -> None:
    regression = demo_run.deployment_ids()["regression-midway"]
    code, out, err = run(capsys, "incidents", "list", "--all", *local(demo_run), "--json")
    assert code == 0, err
    incidents = [i for i in json.loads(out) if i["deployment_id"] == regression]
    assert incidents and all(i["status"] == "resolved" and i["acknowledged_by"] == "alice" for i in incidents)
    code, out, err = run(capsys, "incidents", "show", incidents[0]["incident_id"][:10], *local(demo_run), "--json")
    assert code == 0 and json.loads(out)["incident"]["incident_id"] == incidents[0]["incident_id"], err
    code, _, err = run(capsys, "incidents", "list", "--local", "--state-dir", str(demo_run.state_dir / "nowhere"))
    assert not list(demo_run.state_dir.glob(".nowhere*"))  # reading no state leaves no lock file behind
    assert code == 2 and err.strip().startswith("deployguard incidents list: no local state in"), err


def test_notifications_list_takes_a_prefix_and_names_an_unknown_deployment(
    demo_run: DemoRun, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment_id = demo_run.deployment_ids()["codedeploy-canary"]
    code, out, err = run(capsys, "deployments", "show", deployment_id, *local(demo_run), "--json")
    assert code == 0, err
    recorded = json.loads(out)["notifications"]
    code, out, err = run(capsys, "notifications", "list", deployment_id[:8], *local(demo_run), "--json")
    assert code == 0, out + err
    listed = json.loads(out)  # one JSON array, as `incidents list --json`
    assert listed and {n["notification_id"] for n in listed} == {n["notification_id"] for n in recorded}
    code, out, err = run(capsys, "notifications", "list", deployment_id[:8], *local(demo_run))
    assert code == 0 and out.rstrip().splitlines()[-1].startswith("totals: "), out + err
    code, out, err = run(capsys, "notifications", "list", "nope", *local(demo_run))
    assert code == 2 and out == "" and err.strip() == "deployguard notifications list: deployment nope not found"
