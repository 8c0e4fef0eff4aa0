"""A canary rolled back by remediation on its failing verdict says that verdict once, from where its reason is
written to what people read.

The remediation composes the stop's reason from its parts (``Deployment.end_cause``: the incident, the canary's
failing verdict) and the canary's Assess no longer puts the verdict before it again: the stored reason, the
events, ``deployguard status``, ``deployguard deployments show`` (run through Typer's CliRunner), the console's
detail and the report each say it once. A record written by an older version (the verdict twice in its reason,
no ``end_cause``) is said once too, read by its text.
"""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from deployguard.models import Decision, DeploymentStatus, EventType, LambdaTarget
from deployguard.readmodels import DeploymentReader, wording
from deployguard.readmodels.detail import DetailReader
from deployguard.reporting.markdown import render_markdown
from deployguard.storage.repository import DeploymentRepository
from deployguard_local import cli
from deployguard_local.emulator import sample_handler
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour

DEP = "dep-payments-api"
WIDE = {"COLUMNS": "400"}  # rich does not wrap the lines: a verdict is counted whole


def _roll_out_a_regression(embedded: Any) -> LambdaTarget:
    """payments-api's new version regresses from minute 4: its canary-issue incident's remediation rolls it back."""
    versions = embedded.deploy_sample_function("payments-api", "live", sample_handler)
    target = LambdaTarget(function_name="payments-api", alias="live", stable_version=versions[0],
                          new_version=versions[1])  # fmt: skip
    bad = VersionBehaviour(regress_at=4, regressed_error_rate=0.10, regressed_p99_ms=2000)
    behaviours = {versions[0]: VersionBehaviour(), versions[1]: bad}
    embedded.clock.listeners.append(LambdaTrafficSource("payments-api", "live", 2000, behaviours, seed=3).on_clock)
    request = {"deployment": {"deployment_id": DEP, "service": "payments-api", "version": versions[1],
                              "target": target.model_dump()}}  # fmt: skip
    assert embedded.run_state_machine("CanaryStateMachine", request)["status"] == "SUCCEEDED"
    embedded.invoker.drain()
    return target


def _cli(embedded: Any, *argv: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.app, [*argv, "--table", embedded.ref("DeploymentsTable")], env=WIDE)
    return result.exit_code, " ".join(result.output.split())


def _said_once_everywhere(embedded: Any, verdict: str) -> None:
    """``verdict`` (the failing verdict's words before "since period": the show and the report put the periods on
    the clock) said once by each thing people read."""
    code, out = _cli(embedded, "status", DEP)
    assert code == 1 and out.count(verdict) == 1, out
    assert "remediation rollback for incident" in out, out  # the gate still says the remediation's cause

    code, out = _cli(embedded, "deployments", "show", DEP, "--no-notifications")
    header, table = out.split(" TIME ┃ WHAT ┃", 1)  # before the timeline's table
    assert code == 0 and header.count(verdict) == 1, header
    assert "outcome: rolled_back (exit 1)" in header, header
    assert "why it ended: rolled back by remediation for incident inc-" in header, header
    assert "(canary-issue) on the canary's failing verdict" in header, header
    assert "the canary's last verdict: failing: " + verdict in header, header
    rows = table.split("│ │")  # the timeline's rows: the failing look and the rollback's events each say it once
    assert all(row.count(verdict) <= 1 for row in rows) and sum(verdict in row for row in rows) >= 5, rows

    reader = DeploymentReader(DeploymentRepository())
    detail = DetailReader(reader).detail(DEP)  # the console's deployment page
    assert detail.latest_verdict is not None and verdict in detail.latest_verdict.verdict.summary
    told = [detail.why_ended or "", detail.outcome_note]
    assert " ".join(told).count(verdict) == 0 and "on the canary's failing verdict" in told[0], told
    assert detail.outcome.message.count(verdict) == 1, detail.outcome.message

    markdown = render_markdown(reader.history(DEP))
    top = markdown.split("## Verdict timeline", 1)[0]
    assert top.count(verdict) == 1 and top.count("remediation") == 1, top


def test_a_remediation_rollback_stores_and_says_its_verdict_once(embedded: Any) -> None:
    target = _roll_out_a_regression(embedded)
    repository = DeploymentRepository()
    record = repository.get_deployment(DEP)
    assert (record.status, record.decision) == (DeploymentStatus.ROLLED_BACK, "rolled_back")
    failing = [a for a in repository.assessments(DEP) if a.verdict.decision == Decision.FAILING]
    assert failing and target.function_name == "payments-api"
    summary = failing[-1].verdict.summary
    verdict = summary.split(" since period", 1)[0]
    assert verdict.startswith("canary worse: errors: canary ") and len(verdict) > 40, summary

    # stored once, its parts apart: the reason is composed from them
    cause = record.end_cause
    assert cause is not None, record.decision_reason
    assert (cause.remediation, cause.rules, cause.verdict) == ("rollback", ["canary-issue"], summary)
    assert record.decision_reason == cause.reason()
    assert record.decision_reason.count(verdict) == 1, record.decision_reason
    assert record.decision_reason.startswith(f"remediation rollback for incident {cause.incident_id} (canary-issue)")
    told = [e for e in repository.events(DEP) if e.event_type in (EventType.ROLLBACK_INITIATED,
                                                                   EventType.ROLLBACK_COMPLETED)]  # fmt: skip
    assert told and all(e.message.count(verdict) == 1 for e in told), [e.message for e in told]

    _said_once_everywhere(embedded, verdict)


def test_a_record_written_before_the_parts_still_says_its_verdict_once(embedded: Any) -> None:
    _roll_out_a_regression(embedded)
    repository = DeploymentRepository()
    record = repository.get_deployment(DEP)
    assert record.end_cause is not None
    cause, summary = record.end_cause, record.end_cause.verdict or ""
    verdict = summary.split(" since period", 1)[0]
    # as an older version stored it: the verdict put before the remediation's reason, which says it again
    old = f"{summary} (remediation rollback for incident {cause.incident_id} (canary-issue): {cause.title}; canary "
    old += f"verdict: {summary})"

    def as_written_before(d: Any) -> None:
        d.decision_reason, d.end_cause = old, None

    repository.update_deployment(DEP, as_written_before)
    stored = repository.get_deployment(DEP)
    assert stored.end_cause is None and stored.decision_reason == old and old.count(verdict) == 2
    assert wording.reason_once(stored) == (
        f"{summary} (remediation rollback for incident {cause.incident_id} (canary-issue): {cause.title})"
    )

    _said_once_everywhere(embedded, verdict)
