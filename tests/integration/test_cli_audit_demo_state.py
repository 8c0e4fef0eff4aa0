"""What the CLI audit found on the demo's saved state, read as a user reads it: `notifications` errors
on stderr, `report` errors and formats, the report's metrics and charts from the canary's verdicts
(not the post-deployment looks), and a CodeDeploy rollback deployment that is no promotion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from demo_support import DemoRun, local
from local_control import run

from deployguard.readmodels.deployments import DeploymentQuery, DeploymentReader
from deployguard.readmodels.history import DeploymentHistory, timeline
from deployguard.reporting import render
from deployguard.storage.repository import DeploymentRepository
from deployguard_local import local_state


def test_notifications_errors_go_to_stderr_even_with_json(demo_run: DemoRun, capsys) -> None:
    code, out, err = run(capsys, "notifications", "list", "no-such-deployment", *local(demo_run), "--json")
    assert code == 2 and out == ""
    assert err.startswith("deployguard notifications list: ") and "no-such-deployment" in err


def test_report_to_an_unwritable_file_is_a_report_error_naming_it(demo_run: DemoRun, capsys) -> None:
    code, out, err = run(capsys, "report", "demo-healthy-release", *local(demo_run), "-o", "/proc/nope/x.html")
    assert code == 4 and out == ""
    assert err.startswith("deployguard report: cannot write /proc/nope/x.html") and "Traceback" not in err


def test_report_refuses_two_formats_before_reading_anything(demo_run: DemoRun, capsys) -> None:
    code, out, err = run(capsys, "report", "demo-healthy-release", *local(demo_run), "--format", "html", "--json")
    assert code == 4 and out == "" and "--json and --format html ask for two formats" in err  # README: report errors 4


@pytest.fixture(scope="module")
def histories(demo_run: DemoRun) -> dict[str, DeploymentHistory]:
    """The histories `report` renders (the reader `--local` opens) of the healthy release, the ECS rollout and
    CodeDeploy's rollback deployment, read once: opening the saved state is the slow part of every command."""
    ids = demo_run.deployment_ids()
    with local_state.opened(demo_run.state_dir) as aws:
        reader = DeploymentReader(DeploymentRepository(aws.ref("DeploymentsTable")))
        page = reader.page(DeploymentQuery(service="search-api", limit=50))
        rollback = next(d for d in page.items if d.rollback_of == ids["codedeploy-canary"])
        wanted = {"healthy": "demo-healthy-release", "ecs": ids["ecs-blue-green"], "rollback": rollback.deployment_id}
        return {name: reader.history(deployment_id) for name, deployment_id in wanted.items()}


def test_metrics_and_charts_are_the_canarys_verdicts_not_post_deployment_looks(histories) -> None:
    history = histories["healthy"]
    canary, looks = history.canary_assessments(), history.post_deployment_assessments()
    assert canary and looks  # the release was watched after promotion
    out = render(history, "md")
    metrics = out.split("## Metrics (last canary assessment)", 1)[1].split("## ", 1)[0]
    assert "_none_" not in metrics
    table = {line.split("|")[1].strip(): line for line in metrics.splitlines() if line.startswith("| ")}
    assert {"errors", "duration_p99"} <= set(table)
    assert table["errors"].split("|")[3].strip().endswith("%")  # an error rate reads as a percentage
    html = render(history, "html")
    assert f"at each of {len(canary)} canary assessments" in html
    assert f"at each of {len(history.assessments)} " not in html


def test_an_ecs_error_rate_reads_as_a_percentage(histories) -> None:
    out = render(histories["ecs"], "md")
    errors = next(line for line in out.splitlines() if line.startswith("| errors |"))
    assert errors.split("|")[3].strip().endswith("%") and errors.split("|")[4].strip().endswith("%"), errors
    assert "last canary value 8.85%" in render(histories["ecs"], "html")


def test_a_codedeploy_rollback_deployment_is_no_promotion(demo_run: DemoRun, histories, capsys) -> None:
    history = histories["rollback"]
    released = demo_run.deployment_ids()["codedeploy-canary"]
    rollback = history.deployment.deployment_id
    code, out, _ = run(capsys, "status", rollback[:8], *local(demo_run), "--json")
    outcome = json.loads(out)
    assert code == 1  # the README's table: 1 rolled back or failed, never 0 promoted
    assert outcome["deployment_id"] == rollback and outcome["state"] == "rolled_back"
    assert outcome["message"].startswith(f"rollback deployment of {released} succeeded")
    titles = [item.title for item in timeline(history)]
    assert not any("to the new version" in t for t in titles)
    assert f"traffic 100% to version 1 (rollback deployment of {released})" in titles
    assert "**Outcome: rolled back** (exit 1)" in render(history, "md")


def test_the_readme_shows_the_demos_counts(demo_run: DemoRun) -> None:
    """The README's summary table of `make demo`: its counts (not its wall times) are the demo's."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    shown = readme.split("rollout                decision", 1)[1].split("```", 1)[0]

    def counts(text: str) -> dict[str, list[str]]:
        rows = {line.split()[0]: line.split()[-4:-1] for line in text.splitlines() if "(sim)" in line}
        rows["per channel"] = [line for line in text.splitlines() if line.startswith("deliveries per channel:")]
        return rows

    assert counts(shown) == counts(demo_run.output)


def test_control_verbs_take_a_unique_prefix_as_the_read_commands_do(demo_run: DemoRun, capsys) -> None:
    by = ["--by", "erin", "--reason", "the prefix names one deployment"]
    code, out, err = run(capsys, "control", "abort", "demo-regr", *by, *local(demo_run))
    assert code == 0 and out.strip() == "demo-regression-midway abort: already rolled back (nothing changed)", err
    code, out, err = run(capsys, "control", "abort", "demo-", *by, *local(demo_run))
    assert code == 2 and "is ambiguous" in err and "demo-healthy-release" in err
