"""A deployment's page is bounded however old the deployment: GET /api/deployments/{id} and .../timeline through
the real ConsoleReadFunction (API Gateway payload 2.0 events) on the embedded AWS, DynamoDB reads counted with a
botocore event hook; and the page in a real headless Chromium showing the newest and loading older.

A canary waiting a day for approval is looked at once a minute: 2,000 assessments of about 3.5 KB here. Before,
the detail answered all of them (some 7 MB, past Lambda's 6 MB response limit) after reading them all from
DynamoDB on every 3-second poll."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from long_canary_support import look

from deployguard.models import (
    Assessment,
    AuditEntry,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    EventType,
    LambdaTarget,
    Phase,
    Severity,
)
from deployguard.readmodels import DeploymentReader, timeline
from deployguard.storage import keys
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.bench_scale import DirectSeed, counting
from deployguard_local.console_server import ConsoleServer, LocalCredentials, http_api_event
from deployguard_local.emulator import EmbeddedAws

READER = {"sub": "viewer", "username": "viewer", "scope": "deployguard/read"}
LONG, MID, SHORT, PAGE = 2000, 450, 25, 300
START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
ONE_MB = 1024 * 1024


def _assessment(deployment_id: str, at: datetime, n: int, post: bool = False) -> Assessment:
    summary = f"post-deployment look {n:05d}" if post else f"healthy look {n:05d}: every metric within its margin"
    return look(deployment_id, at, n, summary, post=post)


def _seed(repository: DeploymentRepository, deployment_id: str, looks: int, promoted_looks: int = 0) -> Deployment:
    """A canary looked at once a minute ``looks`` times, each look audited (``assessed``, as the canary does); an
    event and a traffic shift every 100 minutes at the very instant of a look (ties the timeline must never split);
    with ``promoted_looks`` it was promoted after them and has that many post-deployment looks."""
    target = LambdaTarget(function_name="svc", alias="live", stable_version="1", new_version="2")
    ended = START + timedelta(minutes=looks, seconds=30) if promoted_looks else None
    deployment = Deployment(
        deployment_id=deployment_id, service=f"svc-{deployment_id}", environment="production", version="2",
        target=target, started_at=START, version_counter=1, canary_weight=1.0 if ended else 0.1,
        status=DeploymentStatus.SUCCEEDED if ended else DeploymentStatus.IN_PROGRESS,
        phase=Phase.DEPLOYMENT_ACTIVE, ended_at=ended,
    )  # fmt: skip
    with DirectSeed(repository.table_name) as batch:
        batch.put_item(Item=repository._deployment_item(deployment))
        for n in range(looks + promoted_looks):
            at = START + timedelta(minutes=n + 1)
            a = _assessment(deployment_id, at, n, post=n >= looks)
            batch.put_item(Item=repository._history_item(deployment_id, keys.ASSESSMENT, at, a.assessment_id, a))
            if n < looks:
                assessed = AuditEntry(
                    deployment_id=deployment_id,
                    at=at,
                    action="assessed",
                    actor="canary",
                    reason=a.verdict.summary,
                    details={"decision": "healthy", "next": "wait"},
                )
                batch.put_item(Item=repository._history_item(deployment_id, keys.AUDIT, at, f"{n:020d}-as", assessed))
            if n % 100 == 0 and n < looks:
                event = DeploymentEvent(event_id=f"ev-{n:05d}", event_type=EventType.ASSESSMENT_STATUS_CHANGED,
                                        deployment_id=deployment_id, service=deployment.service,
                                        environment="production", version="2", at=at, title="Status",
                                        message=f"look {n}", severity=Severity.INFO)  # fmt: skip
                batch.put_item(Item=repository._history_item(deployment_id, keys.EVENT, at, event.event_id, event))
                entry = AuditEntry(deployment_id=deployment_id, at=at, action="traffic_shifted", actor="canary",
                                   reason=f"step at look {n}", details={"weight": 10 + n // 100})  # fmt: skip
                batch.put_item(Item=repository._history_item(deployment_id, keys.AUDIT, at, f"{n:020d}-au", entry))
    return deployment


@pytest.fixture(scope="module")
def aws() -> Iterator[Any]:
    with EmbeddedAws() as embedded:
        repository = DeploymentRepository()
        _seed(repository, "long-1", LONG)
        _seed(repository, "mid-1", MID)
        _seed(repository, "short-1", SHORT)
        _seed(repository, "page-1", PAGE)
        _seed(repository, "promoted-1", 30, promoted_looks=60)
        _get(embedded, "/api/deployments/short-1")  # warm: the function's first call imports and builds its clients
        yield embedded


def _get(aws: Any, path: str) -> tuple[int, Any]:
    payload, errored = aws.invoke("ConsoleReadFunction", http_api_event("GET", path, {}, b"", READER))
    assert not errored, payload
    return int(payload["statusCode"]), str(payload.get("body", ""))


class Reads:
    """DynamoDB items read, by kind of item (``AS#``, ``EVENT#``, ``AUDIT#``), and every Query's parameters, counted
    with botocore event hooks on the session the function's clients are built from (``bench_scale.counting``)."""

    def __init__(self) -> None:
        self.items: Counter[str] = Counter()
        self.queries: list[dict[str, Any]] = []

    def after(self, model: Any, parsed: Any = None, **_: Any) -> None:
        if model.name == "Query":
            found = (parsed or {}).get("Items", [])
            self.items["Query"] += len(found)
            self.items.update(str(i["sk"]["S"]).split("#", 1)[0] + "#" for i in found)
        elif model.name == "GetItem" and (parsed or {}).get("Item"):
            self.items["GetItem"] += 1

    def params(self, model: Any, params: Any = None, **_: Any) -> None:
        if model.name == "Query":
            self.queries.append(dict(params or {}))

    def get(self, aws: Any, path: str) -> tuple[Any, int, Counter[str], list[dict[str, Any]]]:
        """The answer, its size, and what this request read."""
        self.items, self.queries = Counter(), []
        read_before = self.counter.dynamodb_read_bytes
        status, body = _get(aws, path)
        assert status == 200, (path, body)
        self.items["bytes"] = self.counter.dynamodb_read_bytes - read_before
        return json.loads(body), len(body.encode()), self.items, self.queries

    @contextlib.contextmanager
    def counting(self) -> Iterator[Reads]:
        with counting() as self.counter:
            events = boto3.DEFAULT_SESSION.events
            events.register("after-call.dynamodb.*", self.after, unique_id="histbound-items")
            events.register("before-parameter-build.dynamodb.*", self.params, unique_id="histbound-params")
            try:
                yield self
            finally:
                events.unregister("after-call.dynamodb.*", unique_id="histbound-items")
                events.unregister("before-parameter-build.dynamodb.*", unique_id="histbound-params")


def _measured(aws: Any, path: str) -> tuple[Any, int, Counter[str], list[dict[str, Any]]]:
    with Reads().counting() as reads:
        return reads.get(aws, path)


def _assessment_queries(queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [q for q in queries if q["ExpressionAttributeValues"].get(":prefix") == keys.ASSESSMENT]


# --------------------------------------------------------------------------- the detail


def test_the_detail_of_a_day_old_canary_is_small_and_reads_the_same_as_a_young_one(aws: Any) -> None:
    detail, size, read, queries = _measured(aws, "/api/deployments/long-1")
    assert size < ONE_MB, size  # before: about 7 MB (past Lambda's 6 MB), every assessment in it
    assert [a["assessment_id"] for a in detail["assessments"]] == [f"as-{n:05d}" for n in range(LONG - 20, LONG)]
    assert detail["latest_verdict"]["assessment_id"] == f"as-{LONG - 1:05d}"
    assert len(detail["latest_verdict"]["verdict"]["reasons"]) == 12  # the latest verdict whole
    assert detail["latest_look"] is None
    assert detail["assessments_before"].endswith("#as-01980")  # the oldest shown: page back from it
    assert len(detail["events"]) == 20 and detail["events_complete"]  # 20 events: one every 100 looks
    assert len(detail["audit"]) == 50 and not detail["audit_complete"]  # the newest of 2,000 looks audited
    assert detail["audit"][-1]["reason"] == f"healthy look {LONG - 1:05d}: every metric within its margin"
    # every assessment Query is reverse with a Limit of the page's size: DynamoDB reads O(page), not O(age)
    for query in _assessment_queries(queries):
        assert query["ScanIndexForward"] is False and query["Limit"] <= 22, query
    young, _, young_read, _ = _measured(aws, "/api/deployments/short-1")
    assert len(young["assessments"]) == 20 and young["assessments_before"]
    assert read["AS#"] == young_read["AS#"] == 22, (read, young_read)  # before: all 2,000 (25 of the young one)
    assert read["AUDIT#"] <= 52 and read["EVENT#"] <= 52, read  # before: all 2,020 audit entries
    assert read["bytes"] < 200_000, read  # before: about 10.9 MB read on every poll


def test_the_detail_pages_back_through_every_assessment_once_in_order(aws: Any) -> None:
    seen: list[str] = []
    path = "/api/deployments/mid-1?limit=100"
    pages = 0
    with Reads().counting() as reads:
        while True:
            detail, size, read, _ = reads.get(aws, path)
            pages += 1
            assert size < ONE_MB and detail["latest_verdict"]["assessment_id"] == f"as-{MID - 1:05d}"
            assert read["AS#"] <= 102 + 1, read  # the page and the newest one: never O(age)
            seen = [a["assessment_id"] for a in detail["assessments"]] + seen
            if not detail["assessments_before"]:
                break
            path = f"/api/deployments/mid-1?limit=100&before={quote(detail['assessments_before'], safe='')}"
    assert pages == 5
    assert seen == [f"as-{n:05d}" for n in range(MID)]  # every one, once, in time order


def test_after_promotion_the_canary_verdict_is_found_behind_a_page_of_looks(aws: Any) -> None:
    detail, _, _, queries = _measured(aws, "/api/deployments/promoted-1?limit=5")
    assert [a["details"].get("kind") for a in detail["assessments"]] == ["post_deployment"] * 5
    assert detail["latest_look"]["assessment_id"] == "as-00089"
    assert detail["latest_verdict"]["assessment_id"] == "as-00029"  # the canary's last, before the promotion
    assert all(q["Limit"] <= 7 for q in _assessment_queries(queries)), queries


def test_a_cursor_that_is_not_one_is_a_400_naming_it(aws: Any) -> None:
    for path in ("/api/deployments/long-1?before=yesterday", "/api/deployments/long-1/timeline?before=x%27%20or",
                 "/api/deployments/long-1/timeline?limit=201", "/api/deployments/long-1?limit=0"):  # fmt: skip
        status, body = _get(aws, path)
        assert status == 400, (path, body)
        assert json.loads(body)["field"] in ("query.before", "query.limit"), body


# --------------------------------------------------------------------------- the timeline


def test_the_timeline_pages_back_through_the_whole_timeline_once_in_order(aws: Any) -> None:
    first, size, read, _ = _measured(aws, "/api/deployments/long-1/timeline")
    assert size < 100_000 and read["bytes"] < 300_000, (size, read)  # before: 380 KB answered, 10.9 MB read
    assert len(first["items"]) == 50 and first["next_before"]
    assert [i["detail"][:18] for i in first["items"]] == [f"healthy look {n:05d}" for n in range(1950, 2000)]

    whole = [
        json.loads(i.model_dump_json())
        for i in timeline(DeploymentReader(DeploymentRepository()).history("mid-1"), notifications=False)
    ]
    assert len(whole) == MID + 5 + 6  # assessments, events, traffic steps (the start and 5 shifts)
    collected: list[dict[str, Any]] = []
    path, pages = "/api/deployments/mid-1/timeline?limit=61", 0
    with Reads().counting() as reads:
        while path:
            page, _, read, _ = reads.get(aws, path)
            pages += 1
            assert max(read["AS#"], read["EVENT#"], read["AUDIT#"]) <= 61 + 3, read  # never O(age)
            assert 61 <= len(page["items"]) <= 61 + 2 or not page["next_before"], len(page["items"])
            collected = page["items"] + collected
            before = page["next_before"]
            path = f"/api/deployments/mid-1/timeline?limit=61&before={before}" if before else ""
    assert collected == whole  # each item once, in the timeline's own order (ties at one instant never split)
    assert pages == -(-len(whole) // 61) or pages == len(whole) // 61


# --------------------------------------------------------------------------- the page


@pytest.fixture(scope="module")
def server(aws: Any) -> Iterator[tuple[ConsoleServer, LocalCredentials]]:
    credentials = LocalCredentials()
    console = ConsoleServer(aws, credentials, 0).start()
    try:
        yield console, credentials
    finally:
        console.stop()


def test_the_page_shows_the_newest_and_loads_older(page: Any, server: Any) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    expect = playwright_api.expect
    console, credentials = server
    with console.invoke_lock:  # what the API answers (the server's requests take turns, as in one Lambda container)
        newest = json.loads(_get(console.aws, "/api/deployments/page-1/timeline")[1])
        before = quote(newest["next_before"], safe="")
        older = json.loads(_get(console.aws, f"/api/deployments/page-1/timeline?before={before}")[1])
    page.clock.install()  # the page's timers on a clock the test moves: a poll comes when told, not 3 s later
    page.goto(f"{console.url}/#token={credentials.read_token}")
    expect(page.locator("#who")).to_contain_text("local-viewer")
    page.goto(f"{console.url}/#/deployments/page-1")
    expect(page.locator("#deployment-verdict")).to_contain_text(f"healthy look {PAGE - 1:05d}")
    rows = page.locator("figure.chart", has=page.locator("h4:text-matches('^metric_0')")).locator("details tbody tr")
    expect(rows).to_have_count(20)  # the newest 20 assessments
    expect(page.locator("#deployment-assessments-shown")).to_contain_text("older ones are stored")
    timeline_items = page.locator("#deployment-timeline li")
    expect(timeline_items).to_have_count(len(newest["items"]))
    expect(timeline_items.first).to_contain_text(f"healthy look {PAGE - 1:05d}")  # the newest first

    page.get_by_role("button", name="Load older assessments").click()
    expect(rows).to_have_count(40)
    oldest_shown = START + timedelta(minutes=PAGE - 40 + 1)
    expect(rows.first.locator("td").first).to_have_text(oldest_shown.strftime("%Y-%m-%d %H:%M:%S UTC"))
    page.get_by_role("button", name="Load older", exact=True).click()
    shown = len(newest["items"]) + len(older["items"])
    expect(timeline_items).to_have_count(shown)
    expect(timeline_items.last).to_contain_text(older["items"][0]["title"])  # the oldest loaded last

    # 60 looks more (more than a page of either) while the page polls: what was loaded stays, the gap is filled
    drawn = int(page.locator("#view-deployment").get_attribute("data-drawn") or 0)
    repository = DeploymentRepository()
    with DirectSeed(repository.table_name) as batch:
        for n in range(PAGE, PAGE + 60):
            at = START + timedelta(minutes=n + 1)
            a = _assessment("page-1", at, n)
            batch.put_item(Item=repository._history_item("page-1", keys.ASSESSMENT, at, a.assessment_id, a))
    # two draws later (one poll may have read before the looks were written; a poll starts after the last drew)
    for n in (drawn + 1, drawn + 2):
        page.clock.fast_forward(3_000)  # app.js's POLL_MS
        page.wait_for_function(
            "(n) => Number(document.getElementById('view-deployment').dataset.drawn) >= n", arg=n, timeout=30_000
        )
    expect(rows).to_have_count(40 + 60)
    expect(timeline_items).to_have_count(shown + 60)
    expect(timeline_items.first).to_contain_text(f"healthy look {PAGE + 59:05d}")
    expect(timeline_items.last).to_contain_text(older["items"][0]["title"])
    expect(page.locator("#deployment-verdict")).to_contain_text(f"healthy look {PAGE + 59:05d}")
