"""What one console read costs and shows, through the real ConsoleReadFunction (API Gateway payload 2.0 events) on
the embedded AWS, counting DynamoDB calls and bytes with a botocore event hook (bench_scale.counting):

- an approval wait's Step Functions task token (whoever holds it can SendTaskSuccess) is in no response, report,
  export, CLI output or schema, while the stored record keeps it for the canary;
- GET /api/canaries reads one assessment per canary, however long the canary has run;
- GET /api/deployments/{id} takes exact ids: an unknown one is a 404 after one GetItem (no prefix scan);
- a status filter examines a bounded number of items per request and hands back a cursor to go on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from deployguard import clock
from deployguard.models import (
    Assessment,
    Decision,
    Deployment,
    DeploymentStatus,
    HealthStatus,
    LambdaTarget,
    Phase,
    Verdict,
)
from deployguard.readmodels import history_json_schema
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.bench_scale import CallCounter, DirectSeed, counting
from deployguard_local.console_server import http_api_event, openapi_document
from deployguard_local.emulator import EmbeddedAws

TOKEN = "AAAAKgAAAAIAAAAAAAAAAS-SECRET-TASK-TOKEN-0f3c"
READER = {"sub": "viewer", "username": "viewer", "scope": "deployguard/read"}


@pytest.fixture
def aws() -> Iterator[Any]:
    with EmbeddedAws() as embedded:
        yield embedded


def _get(aws: Any, path: str) -> tuple[int, str]:
    payload, errored = aws.invoke("ConsoleReadFunction", http_api_event("GET", path, {}, b"", READER))
    assert not errored, payload
    return int(payload["statusCode"]), str(payload.get("body", ""))


def _deployment(deployment_id: str, service: str = "svc", **changes: Any) -> Deployment:
    target = LambdaTarget(function_name=service, alias="live", stable_version="1", new_version="2")
    fields: dict[str, Any] = {"status": DeploymentStatus.IN_PROGRESS, "phase": Phase.DEPLOYMENT_ACTIVE,
                              "started_at": clock.now() - timedelta(minutes=5), "canary_weight": 0.5}  # fmt: skip
    fields.update(changes)
    return Deployment(deployment_id=deployment_id, service=service, environment="production", version="2",
                      target=target, **fields)  # fmt: skip


def _dynamodb(counter: CallCounter) -> dict[str, int]:
    return {op: n for (service, op), n in counter.calls.items() if service == "dynamodb"}


# --------------------------------------------------------------------------- 1. the approval token


def test_the_approval_token_is_stored_for_the_canary_and_shown_to_no_reader(
    aws: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = DeploymentRepository()
    waiting = _deployment("appr-1")
    waiting.control.awaiting_approval, waiting.control.approval_token = True, TOKEN
    repository.create_deployment(waiting)
    repository.update_deployment("appr-1", lambda d: setattr(d.control, "last_actor", "someone"))  # a rewrite
    assert repository.get_deployment("appr-1").control.approval_token == TOKEN  # the canary's approval needs it

    for path in ("/api/canaries", "/api/deployments/appr-1", "/api/deployments?limit=5",
                 "/api/deployments?status=in_progress", "/api/deployments/appr-1/timeline", "/api/services",
                 "/api/deployments/appr-1/report?format=json", "/api/deployments/appr-1/report?format=md",
                 "/api/deployments/appr-1/report?format=html", "/openapi.json"):  # fmt: skip
        status, body = _get(aws, path)
        assert status == 200, (path, body)
        assert TOKEN not in body and "approval_token" not in body, path
    card = json.loads(_get(aws, "/api/canaries")[1])[0]
    assert card["deployment"]["control"]["awaiting_approval"] is True  # the page still says it waits

    assert "approval_token" not in json.dumps(openapi_document())
    assert "approval_token" not in json.dumps(history_json_schema())
    documented = Path(__file__).resolve().parents[3] / "docs"
    for name in ("openapi.json", "history-schema.json"):
        assert "approval_token" not in (documented / name).read_text(encoding="utf-8"), name

    # the CLI on the same store: status --json, deployments show --json, report files
    from deployguard_local import cli

    table = repository.table_name
    for argv in (["status", "appr-1", "--table", table, "--json"],
                 ["deployments", "show", "appr-1", "--table", table, "--json"],
                 ["deployments", "list", "--table", table, "--json"]):  # fmt: skip
        cli.main(argv)
        out = capsys.readouterr().out
        assert "appr-1" in out and TOKEN not in out and "approval_token" not in out, argv
    for fmt in ("json", "md", "html"):
        written = tmp_path / f"report.{fmt}"
        cli.main(["report", "appr-1", "--table", table, "--format", fmt, "--output", str(written)])
        capsys.readouterr()
        text = written.read_text(encoding="utf-8")
        assert "appr-1" in text and TOKEN not in text, fmt


# --------------------------------------------------------------------------- 4. GET /api/canaries


def _seed_canaries(repository: DeploymentRepository, count: int, age_minutes: int) -> None:
    started = clock.now() - timedelta(minutes=age_minutes)
    with DirectSeed(repository.table_name) as batch:
        for n in range(count):
            d = _deployment(f"c-{n:03d}", service=f"svc-{n}", started_at=started, version_counter=1)
            batch.put_item(Item=repository._deployment_item(d))
            for m in range(age_minutes):
                at = started + timedelta(minutes=m + 1)
                verdict = Verdict(decision=Decision.HEALTHY, summary=f"ok {m:05d}")
                a = Assessment(deployment_id=d.deployment_id, at=at, canary_weight=0.1, verdict=verdict,
                               health_status=HealthStatus.HEALTHY, health_score=97.0)  # fmt: skip
                batch.put_item(Item=repository._history_item(d.deployment_id, "AS#", at, f"{m:05d}", a))


@pytest.mark.parametrize("age_minutes", [3, 240])
def test_the_canaries_poll_reads_one_assessment_per_canary_however_old(aws: Any, age_minutes: int) -> None:
    _seed_canaries(DeploymentRepository(), 3, age_minutes)
    _get(aws, "/api/canaries")  # warm: the function's first call imports and builds its clients
    with counting() as counter:
        status, body = _get(aws, "/api/canaries")
    cards = json.loads(body)
    assert status == 200 and len(cards) == 3
    assert {c["summary"] for c in cards} == {f"ok {age_minutes - 1:05d}"}  # the newest assessment
    calls = _dynamodb(counter)
    # the active index (1 query), the open incidents (1), one Limit=1 reverse query per canary
    assert calls["Query"] <= 3 + 2, calls
    # before: 240 minutes of assessments were every one read (about 110 KB a canary); now about one item each
    assert counter.dynamodb_read_bytes < 3 * 2500 + 4000, counter.dynamodb_read_bytes


# --------------------------------------------------------------------------- 5. exact ids


def test_an_unknown_id_is_a_404_after_one_getitem_and_a_prefix_is_no_id(aws: Any) -> None:
    repository = DeploymentRepository()
    with DirectSeed(repository.table_name) as batch:
        for n in range(30):
            d = _deployment(f"old-{n:03d}", service=f"svc-{n % 10}", status=DeploymentStatus.ROLLED_BACK,
                            started_at=clock.now() - timedelta(hours=n + 1), version_counter=1)  # fmt: skip
            batch.put_item(Item=repository._deployment_item(d))
            batch.put_item(Item={"pk": "CATALOG", "sk": f"SVC#svc-{n % 10}#ENV#production",
                                 "service": f"svc-{n % 10}", "environment": "production"})  # fmt: skip
    _get(aws, "/api/deployments/old-001")
    for path in ("/api/deployments/nope", "/api/deployments/old-00", "/api/deployments/old-00/timeline",
                 "/api/deployments/old-00/report?format=json"):  # fmt: skip
        with counting() as counter:
            status, body = _get(aws, path)
        assert status == 404 and json.loads(body)["message"].endswith("not found"), (path, body)
        assert _dynamodb(counter) == {"GetItem": 1}, (path, counter.calls)
    status, body = _get(aws, "/api/deployments/old-001")
    assert status == 200 and json.loads(body)["deployment"]["deployment_id"] == "old-001"


# --------------------------------------------------------------------------- 6. a status filter, bounded


def _scanned(counter_events: Any) -> list[int]:
    counts: list[int] = []

    def after(model: Any, parsed: Any = None, **_: Any) -> None:
        counts.append(int((parsed or {}).get("ScannedCount", 0)))

    counter_events.register("after-call.dynamodb.Query", after, unique_id="scanned-count")
    return counts


def test_a_status_filter_examines_a_bounded_number_per_request_and_its_cursor_goes_on(aws: Any) -> None:
    import boto3

    from deployguard.readmodels.deployments import MAX_EXAMINED

    repository = DeploymentRepository()
    now = clock.now()
    with DirectSeed(repository.table_name) as batch:  # 2,500 rolled back, one succeeded 1,800 deployments ago
        for k in range(2500):
            status = DeploymentStatus.SUCCEEDED if k == 1800 else DeploymentStatus.ROLLED_BACK
            d = _deployment(f"d-{k:05d}", status=status, started_at=now - timedelta(minutes=k + 1), version_counter=1)
            batch.put_item(Item=repository._deployment_item(d))
        batch.put_item(Item={"pk": "CATALOG", "sk": "SVC#svc#ENV#production", "service": "svc",
                             "environment": "production"})  # fmt: skip
    _get(aws, "/api/deployments?limit=1")
    path = "/api/deployments?service=svc&environment=production&status=succeeded&limit=20"
    pages, found = 0, []
    cursor: str | None = None
    while True:
        with counting() as counter:
            assert boto3.DEFAULT_SESSION is not None
            scanned = _scanned(boto3.DEFAULT_SESSION.events)
            status, body = _get(aws, path + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, body
        page = json.loads(body)
        pages += 1
        found += [d["deployment_id"] for d in page["items"]]
        # one request: at most MAX_EXAMINED deployments read (before: the whole history, 2,500, in one request)
        assert sum(scanned) <= MAX_EXAMINED and _dynamodb(counter)["Query"] <= 8, (scanned, counter.calls)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert found == ["d-01800"] and pages == 3  # 1,000 + 1,000 + 500 examined

    # without a filter a page still fills at once, and the first page of a filter that matches early ends early
    with counting() as counter:
        assert boto3.DEFAULT_SESSION is not None
        scanned = _scanned(boto3.DEFAULT_SESSION.events)
        status, body = _get(aws, "/api/deployments?service=svc&environment=production&status=rolled_back&limit=5")
    assert scanned == [6], scanned  # a status most deployments have: one query of limit + 1
    first = json.loads(body)
    assert [d["deployment_id"] for d in first["items"]] == [f"d-{k:05d}" for k in range(5)] and first["next_cursor"]
