"""A deployment's report always fits one answer: GET /api/deployments/{id}/report through the real
ConsoleReadFunction (API Gateway payload 2.0 events) on the embedded AWS.

A canary waiting a day for approval is looked at once a minute: 2,000 looks of about 3.5 KB. Before, its report
was some 6 MB of HTML (mostly charts) and 10 MB of JSON, and the function failed with
Function.ResponseSizeTooLarge (Lambda answers at most 6 MB), so "Open the report" failed exactly for those
canaries. Now the whole report is answered when it fits 5 MB, else a bounded one: every verdict change and
traffic step, the first and last looks in full, the others counted, and how to get them all."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from long_canary_support import look

from deployguard.models import (
    Assessment,
    AuditEntry,
    Decision,
    Deployment,
    DeploymentStatus,
    LambdaTarget,
    Phase,
)
from deployguard.readmodels import DeploymentHistory, DeploymentReader
from deployguard.reporting import render
from deployguard.reporting.bounded import (
    REPORT_SAFE_BYTES,
    ReportTooLarge,
    answer_bytes,
    bound,
    render_bounded,
    render_within,
)
from deployguard.storage import keys
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.bench_scale import DirectSeed
from deployguard_local.console_server import http_api_event
from deployguard_local.emulator import EmbeddedAws

READER = {"sub": "viewer", "username": "viewer", "scope": "deployguard/read"}
LONG, SHORT = 2000, 25
INCONCLUSIVE = range(1000, 1003)  # three inconclusive looks mid-way: two verdict changes (1000, 1003) kept
KEPT = 100 + 2 + 100  # the first and last 100 looks and the verdict changes
START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
LAMBDA_LIMIT = 6 * 1024 * 1024


def _assessment(deployment_id: str, at: datetime, n: int) -> Assessment:
    decision = Decision.INCONCLUSIVE if n in INCONCLUSIVE else Decision.HEALTHY
    return look(deployment_id, at, n, f"{decision.value} look {n:05d}", decision=decision)


def _seed(repository: DeploymentRepository, deployment_id: str, looks: int) -> None:
    """A canary looked at once a minute, each look audited; a traffic step every 500 looks."""
    target = LambdaTarget(function_name="svc", alias="live", stable_version="1", new_version="2")
    deployment = Deployment(
        deployment_id=deployment_id, service=f"svc-{deployment_id}", environment="production", version="2",
        target=target, started_at=START, version_counter=1, canary_weight=0.1,
        status=DeploymentStatus.IN_PROGRESS, phase=Phase.DEPLOYMENT_ACTIVE,
    )  # fmt: skip
    with DirectSeed(repository.table_name) as batch:
        batch.put_item(Item=repository._deployment_item(deployment))
        for n in range(looks):
            at = START + timedelta(minutes=n + 1)
            a = _assessment(deployment_id, at, n)
            batch.put_item(Item=repository._history_item(deployment_id, keys.ASSESSMENT, at, a.assessment_id, a))
            assessed = AuditEntry(
                deployment_id=deployment_id,
                at=at,
                action="assessed",
                actor="canary",
                reason=a.verdict.summary,
                details={"decision": a.verdict.decision.value},
            )
            batch.put_item(Item=repository._history_item(deployment_id, keys.AUDIT, at, f"{n:020d}-as", assessed))
            if n % 500 == 0:
                entry = AuditEntry(deployment_id=deployment_id, at=at, action="traffic_shifted", actor="canary",
                                   reason=f"step at look {n}", details={"weight": 10 + n // 500})  # fmt: skip
                batch.put_item(Item=repository._history_item(deployment_id, keys.AUDIT, at, f"{n:020d}-au", entry))


@pytest.fixture(scope="module")
def aws() -> Iterator[Any]:
    with EmbeddedAws() as embedded:
        repository = DeploymentRepository()
        _seed(repository, "long-1", LONG)
        _seed(repository, "short-1", SHORT)
        yield embedded


def _report(aws: Any, deployment_id: str, fmt: str) -> tuple[dict[str, Any], str]:
    event = http_api_event("GET", f"/api/deployments/{deployment_id}/report?format={fmt}", {}, b"", READER)
    payload, errored = aws.invoke("ConsoleReadFunction", event)
    assert not errored, str(payload)[:300]
    assert payload["statusCode"] == 200, payload
    assert len(json.dumps(payload).encode()) < LAMBDA_LIMIT
    return payload, str(payload["body"])


@pytest.fixture(scope="module")
def long_history(aws: Any) -> DeploymentHistory:
    return DeploymentReader(DeploymentRepository()).history("long-1")


@pytest.fixture(scope="module")
def long_reports(aws: Any) -> dict[str, tuple[dict[str, Any], str]]:
    # html and json through the function (each reads the 4,000 items again: ~7 s of CPU); Markdown is rendered by
    # the same render_within the function answers with (the function's Markdown answer: the small deployment's test)
    return {fmt: _report(aws, "long-1", fmt) for fmt in ("html", "json")}


def test_the_whole_report_of_2000_looks_does_not_fit_one_answer(long_history: DeploymentHistory) -> None:
    history = long_history
    assert len(render(history, "html").encode()) > REPORT_SAFE_BYTES
    assert len(render(history, "json").encode()) > REPORT_SAFE_BYTES


def test_html_report_of_2000_looks_is_bounded_and_says_so(long_reports: dict[str, Any]) -> None:
    payload, body = long_reports["html"]
    assert payload["headers"]["Content-Type"].startswith("text/html")
    assert len(body.encode()) <= REPORT_SAFE_BYTES
    assert body.startswith("<!DOCTYPE html>") and body.rstrip().endswith("</html>")
    summarised = int(re.search(r'data-bounded="(\d+)"', body).group(1))  # type: ignore[union-attr]
    assert summarised == LONG - KEPT
    assert f"{summarised} of the deployment&#x27;s {LONG} looks" in body
    assert "deployguard report long-1 --format json" in body
    assert f"{summarised - 2} looks at 10% traffic: healthy" in body and "2 looks at 10% traffic: inconclusive" in body
    for n in (0, 99, 1000, 1003, 1900, 1999):  # the edges and every verdict change, in full
        assert f" look {n:05d}" in body, n
    for n in (500, 1001, 1002):  # summarised
        assert f" look {n:05d}" not in body, n
    for weight in (10, 11, 12, 13):  # every traffic step
        assert f"{weight}%" in body


def test_markdown_report_of_2000_looks_fits_so_it_is_whole(long_history: DeploymentHistory) -> None:
    """Markdown has no charts: 2,000 looks are some 0.4 MB, so every look is answered (bounded only past 5 MB)."""
    body = render_within(long_history, "md")
    assert len(body.encode()) <= REPORT_SAFE_BYTES
    assert "This report is bounded" not in body
    rows = [line for line in body.splitlines() if re.match(r"\| \d\d:\d\d:\d\d \| 10% \|", line)]
    assert len(rows) == LONG
    assert "traffic: 0% at 08:00:00, 10% at 08:01:00, 11% at 16:21:00" in body


def test_markdown_report_is_bounded_the_same_way_when_it_does_not_fit(long_history: DeploymentHistory) -> None:
    history = long_history
    body = render_within(history, "md", limit=200_000)
    assert len(body.encode()) <= 200_000
    assert f"> This report is bounded: {LONG - KEPT} of the deployment's {LONG} looks" in body
    assert "deployguard report long-1 --format json" in body
    rows = [line for line in body.splitlines() if re.match(r"\| \d\d:\d\d:\d\d \| 10% \|", line)]
    assert len(rows) == KEPT
    assert "inconclusive look 01000" in body and "healthy look 01003" in body and "look 01001" not in body


def test_json_report_of_2000_looks_is_a_bounded_document(long_reports: dict[str, Any]) -> None:
    payload, body = long_reports["json"]
    assert payload["headers"]["Content-Type"] == "application/json"
    assert len(body.encode()) <= REPORT_SAFE_BYTES
    document = json.loads(body)
    assert document["schema"] == "deployguard-report-bounded/1"
    summary, history = document["summarised"], document["history"]
    kept = [a["verdict"]["summary"] for a in history["assessments"]]
    assert summary["looks"] + len(kept) == summary["of"] == LONG
    assert summary["by_step"] == [
        {"weight": 0.1, "decision": "healthy", "looks": LONG - KEPT - 2},
        {"weight": 0.1, "decision": "inconclusive", "looks": 2},
    ]
    assert summary["full_export"].startswith("deployguard report long-1 --format json")
    assert [s for s in kept if s.startswith("inconclusive")] == ["inconclusive look 01000"]
    assert "healthy look 01003" in kept
    assert summary["audit_entries"] == summary["looks"]  # their 'assessed' audit entries, left out
    assert [s["weight"] for s in history["traffic"]] == [0.0, 0.1, 0.11, 0.12, 0.13]


def test_a_small_deployment_report_is_the_whole_report_unchanged(aws: Any) -> None:
    history = DeploymentReader(DeploymentRepository()).history("short-1")
    stamp = re.compile(r"exported [^;]*;|\"exported_at\": \"[^\"]*\"")
    for fmt in ("html", "md", "json"):
        _, body = _report(aws, "short-1", fmt)
        assert stamp.sub("", body) == stamp.sub("", render(history, fmt)), fmt
    _, body = _report(aws, "short-1", "json")
    assert json.loads(body)["schema"] == "deployguard-history/1" and len(json.loads(body)["assessments"]) == SHORT


def test_the_bound_keeps_fewer_looks_until_the_report_fits(long_history: DeploymentHistory) -> None:
    history = long_history
    kept_25, summarised_25 = bound(history, 25)
    limit = answer_bytes(render_bounded(kept_25, "json", summarised_25))  # 25 looks at each end fit exactly
    for fits, kept in ((limit, 25 + 2 + 25), (limit - 1, 5 + 2 + 5)):
        body = render_within(history, "json", limit=fits)
        assert answer_bytes(body) <= fits
        assert len(json.loads(body)["history"]["assessments"]) == kept
    with pytest.raises(ReportTooLarge):  # even with no look but the first: the history's other parts are bigger
        render_within(history, "json", limit=3_000)


def test_a_verdict_flapping_every_look_is_bounded_too(long_history: DeploymentHistory) -> None:
    """Every look a verdict change: keeping every change would not fit, so the first and last changes are kept
    and the report says how many are summarised."""
    flapping = [
        a.model_copy(update={"verdict": a.verdict.model_copy(
            update={"decision": Decision.INCONCLUSIVE if n % 2 else Decision.HEALTHY})})
        for n, a in enumerate(long_history.assessments)
    ]  # fmt: skip
    history = long_history.model_copy(update={"assessments": flapping})
    body = render_within(history, "html")
    assert answer_bytes(body) <= REPORT_SAFE_BYTES
    looks = int(re.search(r'data-bounded="(\d+)"', body).group(1))  # type: ignore[union-attr]
    assert looks == LONG - 501  # look 0, and 250 changes at each end
    assert f"{looks} verdict changes are among the summarised looks: too many to show." in body
    assert "(every traffic step, alert and incident is shown;" in body
    document = json.loads(render_within(history, "json"))
    assert document["summarised"]["changes_left_out"] == looks
    assert len(document["history"]["assessments"]) == 501


def test_audit_entries_by_the_thousand_leave_out_their_oldest_and_say_so(long_history: DeploymentHistory) -> None:
    """The last resort, instead of no answer: when even one look at each end does not fit (here 6,000 control
    audit entries, 2 MB), the newest 200 events, notifications and audit entries are kept and the report says how
    many older ones it left out."""
    entry = next(e for e in long_history.audit if e.action != "assessed")
    many = [
        entry.model_copy(update={"action": "control_pause", "reason": f"pause {n} " + "x" * 300}) for n in range(6000)
    ]
    history = long_history.model_copy(update={"audit": long_history.audit + many})
    limit = 1024 * 1024
    body = render_within(history, "json", limit=limit)
    assert answer_bytes(body) <= limit
    document = json.loads(body)
    left_out = document["summarised"]["older_left_out"]["audit entries"]
    assert left_out > 0 and len(document["history"]["audit"]) == 200
    html = render_within(history, "html", limit=limit)
    assert f"the oldest {left_out} audit entries are left out (the newest 200 of each kept)" in html
