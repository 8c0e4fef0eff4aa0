"""An incident opens one issue in GitHub and in Jira, comments on escalation and acknowledgement,
closes it on resolve; idempotent; tokens from Secrets Manager; every URL through the outbound guard.
The trackers are local servers on 127.0.0.1 that check the real APIs' request shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from incident_support_it import FUNCTION, canary_in_flight, failing_assessment
from tracker_servers import GITHUB_TOKEN, JIRA_EMAIL, JIRA_TOKEN, FakeApi, tracker_servers

from deployguard.alerts.engine import AlertEngine
from deployguard.alerts.settings import AlertingSettings
from deployguard.aws import clients
from deployguard.aws.events import EventPublisher
from deployguard.incidents.models import IncidentStatus
from deployguard.incidents.trackers import SYNC_RETRY
from deployguard.remediation.targets import TargetAllowlist
from deployguard.storage.repository import DeploymentRepository


def engine(settings: AlertingSettings) -> AlertEngine:
    """The engine in local mode (trackers on 127.0.0.1 over http are allowed only there)."""
    allowlist = TargetAllowlist([], [FUNCTION])
    return AlertEngine(settings, DeploymentRepository(), EventPublisher(), allowlist=allowlist, local_mode=True)


@pytest.fixture
def servers() -> Iterator[tuple[FakeApi, FakeApi]]:
    with tracker_servers() as pair:
        yield pair


def _settings(github: FakeApi, jira: FakeApi, **extra: Any) -> AlertingSettings:
    return AlertingSettings.model_validate(
        {
            "issue_trackers": {
                "github": {"type": "github", "repository": "acme/shop", "api_url": github.url,
                           "token_secret": "deployguard/github#token", "labels": ["deployguard", "incident"],
                           "allowed_hosts": ["127.0.0.1"]},  # loopback: an explicit opt-in (local mode)
                "jira": {"type": "jira", "base_url": jira.url, "project_key": "OPS", "email": JIRA_EMAIL,
                         "token_secret": "deployguard/jira", "allowed_hosts": ["127.0.0.1"]},
                **extra,
            },
            "remediation": {"plans": []},  # no automatic rollback: a rolled-back deployment's incidents page no more
        }
    )  # fmt: skip


def _secrets() -> None:
    sm = clients.client("secretsmanager")
    sm.create_secret(Name="deployguard/github", SecretString=json.dumps({"token": GITHUB_TOKEN}))
    sm.create_secret(Name="deployguard/jira", SecretString=JIRA_TOKEN)


def _audit(deployment_id: str, action: str) -> list[Any]:
    return [e for e in DeploymentRepository().audit_trail(deployment_id) if e.action == action]


def test_one_issue_per_incident_commented_and_closed_in_github_and_jira(embedded: Any, servers: Any) -> None:
    github, jira = servers
    _secrets()
    deployment, _ = canary_in_flight(embedded)
    eng = engine(_settings(github, jira))
    eng.on_assessment(deployment, failing_assessment(deployment))
    eng.on_assessment(deployment, failing_assessment(deployment))  # joins the same incidents: no new issue
    incidents = {i.group: i for i in eng.incident_store.open_incidents()}
    canary = incidents["canary"]
    # one issue per incident (canary and health) in each tracker, with the incident's marker label
    assert len(github.issues) == len(jira.issues) == len(incidents) == 2
    marker = f"deployguard-{canary.incident_id}"
    gh = next(i for i in github.issues.values() if marker in [x["name"] for x in i["labels"]])
    gh_n = str(gh["number"])
    assert gh["title"].startswith("[critical]") and canary.incident_id in gh["body"]
    assert {x["name"] for x in gh["labels"]} >= {"deployguard", "incident"}
    assert canary.issues["github"]["key"] == str(gh["number"]) and canary.issues["jira"]["key"].startswith("OPS-")
    jira_key = canary.issues["jira"]["key"]
    assert jira.issues[jira_key]["fields"]["issuetype"] == {"name": "Task"}

    # escalation: the emergency policy's second step, 120 s later, is commented
    embedded.clock.advance(121)
    eng.on_tick()
    assert any("Escalated: page 2" in c for c in github.comments[gh_n])
    assert len(jira.comments[jira_key]) == 1

    # the record of the issue is lost: the marker label finds it again, nothing is created twice
    eng.incident_store.update(canary.incident_id, lambda i: i.issues.clear())
    eng.acknowledge(canary.incident_id, "alice", "looking")
    assert len(github.issues) == len(jira.issues) == 2
    assert github.comments[gh_n][-1] == "Acknowledged by alice: looking"
    eng.trackers.on_news(eng.incident_store.get(canary.incident_id), "acknowledged", "Acknowledged by alice: looking")
    assert len(github.comments[gh_n]) == 2 and len(jira.comments[jira_key]) == 2  # a repeat is not sent again

    eng.resolve(canary.incident_id, "alice", "rolled back, fixed in 43")
    assert github.issues[gh_n]["state"] == "closed" and github.issues[gh_n]["state_reason"] == "completed"
    assert jira.issues[jira_key]["status"] == "Done"
    assert [r.body for r in jira.calls("POST", rf"/rest/api/3/issue/{jira_key}/transitions")] == [
        {"transition": {"id": "31"}}
    ]
    assert eng.incident_store.get(canary.incident_id).status == IncidentStatus.RESOLVED
    assert len(_audit(deployment.deployment_id, "issue_closed")) == 2
    assert not _audit(deployment.deployment_id, "issue_tracker_failed")


def test_a_tracker_outage_is_audited_and_the_issue_created_on_the_next_news(embedded: Any, servers: Any) -> None:
    github, jira = servers
    _secrets()
    deployment, _ = canary_in_flight(embedded)
    jira.fail_next = [503]  # the search before the create fails
    eng = engine(_settings(github, jira))
    eng.on_assessment(deployment, failing_assessment(deployment))
    failed = _audit(deployment.deployment_id, "issue_tracker_failed")
    assert len(failed) == 1 and "HTTP 503" in failed[0].reason and failed[0].details["tracker"] == "jira"
    assert len(github.issues) == 2 and len(jira.issues) == 1  # the other incident's issue went through
    canary = next(i for i in eng.incident_store.open_incidents() if i.group == "canary")
    eng.acknowledge(canary.incident_id, "bob")
    assert len(jira.issues) == 2 and "jira" in eng.incident_store.get(canary.incident_id).issues


def _canary_incident(embedded: Any, github: Any, jira: Any) -> tuple[Any, Any, Any]:
    """A canary in flight, its failing assessment through the engine with both trackers: its canary incident."""
    _secrets()
    deployment, _ = canary_in_flight(embedded)
    eng = engine(_settings(github, jira))
    eng.on_assessment(deployment, failing_assessment(deployment))
    canary = next(i for i in eng.incident_store.open_incidents() if i.group == "canary")
    return deployment, eng, canary


@pytest.mark.parametrize(
    ("tracker", "failing"),
    [
        ("github", ("POST", r"/repos/acme/shop/issues/\d+/comments")),  # the close's comment
        ("github", ("PATCH", r"/repos/acme/shop/issues/\d+")),  # the state change, after the comment went out
        ("jira", ("POST", r"/rest/api/3/issue/OPS-\d+/transitions")),  # the transition to Done
    ],
    ids=["github-comment", "github-close", "jira-transition"],
)
def test_a_failed_close_is_kept_and_the_tick_closes_the_issue(
    embedded: Any, servers: Any, tracker: str, failing: tuple[str, str]
) -> None:
    """A resolved incident gets no more news: the close that failed is retried by the minute tick
    (IssueTrackerSync.retry_pending), against the tracker answering 503 once, then normally."""
    github, jira = servers
    api = {"github": github, "jira": jira}[tracker]
    _secrets()
    deployment, _ = canary_in_flight(embedded)
    eng = engine(_settings(github, jira))
    eng.on_assessment(deployment, failing_assessment(deployment))
    canary = next(i for i in eng.incident_store.open_incidents() if i.group == "canary")
    key = eng.incident_store.get(canary.incident_id).issues[tracker]["key"]
    api.fail_once.append((*failing, 503))
    eng.resolve(canary.incident_id, "alice", "fixed in 43")
    assert not api.fail_once  # the tracker failed once ...
    state = github.issues[key]["state"] if tracker == "github" else jira.issues[key]["status"]
    assert state in ("open", "To Do")  # ... and the issue stayed open
    failed = _audit(deployment.deployment_id, "issue_tracker_failed")
    assert len(failed) == 1 and "HTTP 503" in failed[0].reason and "retried by the minute tick" in failed[0].reason
    assert eng.on_tick().tracker_syncs == [  # the minute tick sends it again (the tracker is back)
        {"tracker": tracker, "incident_id": canary.incident_id, "news": "resolved", "synced": True}
    ]
    if tracker == "github":
        assert github.issues[key]["state"] == "closed" and github.issues[key]["state_reason"] == "completed"
        assert github.comments[key].count("Resolved by alice: fixed in 43") == 1  # not commented twice
    else:
        assert jira.issues[key]["status"] == "Done" and len(jira.comments[key]) == 1
    assert len(_audit(deployment.deployment_id, "issue_closed")) == 2  # both trackers, each once
    assert eng.trackers.retry_pending() == []  # done: nothing left, no call made
    calls = len(api.requests)
    embedded.clock.advance(60)
    assert eng.trackers.retry_pending() == [] and len(api.requests) == calls


def test_a_sync_still_failing_is_given_up_after_its_retries(embedded: Any, servers: Any) -> None:
    github, jira = servers
    deployment, eng, canary = _canary_incident(embedded, github, jira)
    github.fail_once.extend([("POST", r"/repos/acme/shop/issues/\d+/comments", 503)] * 2)
    eng.acknowledge(canary.incident_id, "bob")
    [retried] = eng.trackers.retry_pending()
    assert (retried["news"], retried["synced"]) == ("acknowledged", False) and "HTTP 503" in retried["error"]
    embedded.clock.advance(SYNC_RETRY.total_seconds() + 60)
    assert [(r["news"], r.get("gave_up")) for r in eng.trackers.retry_pending()] == [("acknowledged", True)]
    assert _audit(deployment.deployment_id, "issue_tracker_gave_up") and eng.trackers.retry_pending() == []


def test_a_tracker_still_down_costs_the_tick_one_request_not_one_per_sync(embedded: Any, servers: Any) -> None:
    """Two pieces of news GitHub failed (an acknowledgement, then the close): the tick tries the first, which fails
    again, and leaves the rest of GitHub's for the next tick (a tracker down costs one request's timeout)."""
    github, jira = servers
    _, eng, canary = _canary_incident(embedded, github, jira)
    github.fail_once.extend([("POST", r"/repos/acme/shop/issues/\d+/comments", 503)] * 10)
    eng.acknowledge(canary.incident_id, "bob")
    eng.resolve(canary.incident_id, "alice", "fixed in 43")
    calls = len(github.requests)
    tried = [r for r in eng.on_tick().tracker_syncs if r["tracker"] == "github"]
    assert [(r["news"], r["synced"]) for r in tried] == [("acknowledged", False)]
    assert len(github.requests) == calls + 1


def test_tracker_urls_pass_the_outbound_guard(embedded: Any) -> None:
    _secrets()
    deployment, _ = canary_in_flight(embedded)
    metadata = {"type": "github", "repository": "acme/shop", "api_url": "http://169.254.169.254/latest",
                "token_secret": "deployguard/github#token", "allowed_hosts": ["169.254.169.254"]}  # fmt: skip
    settings = AlertingSettings.model_validate({"issue_trackers": {"sneaky": metadata}})
    eng = engine(settings)
    eng.on_assessment(deployment, failing_assessment(deployment))
    failed = _audit(deployment.deployment_id, "issue_tracker_failed")
    assert failed and all("link-local address" in e.reason for e in failed)
    assert "alerting.issue_trackers.sneaky" in failed[0].reason


def test_tracker_settings_name_the_missing_field() -> None:
    with pytest.raises(ValueError, match=r"issue_trackers\.gh\n.*repository is required for a github tracker"):
        AlertingSettings.model_validate({"issue_trackers": {"gh": {"type": "github", "token_secret": "x"}}})
    with pytest.raises(ValueError, match="exactly one of token_secret and token"):
        AlertingSettings.model_validate(
            {"issue_trackers": {"j": {"type": "jira", "base_url": "https://acme.atlassian.net", "project_key": "OPS",
                                      "email": "a@b.c"}}}
        )  # fmt: skip


def test_a_retry_of_an_alert_that_failed_after_opening_its_incident_opens_the_issue(
    embedded: Any, servers: Any
) -> None:
    """The alert engine's run on an event (through the outbox) opens the incident, then DynamoDB refuses
    the alert's record (every attempt of that PutItem throttled): the run fails before any issue. The
    outbox runs the engine again (the minute tick's drain): the same alert joins its incident once, and
    the issue is opened because the incident has none, whoever opened it."""
    from deployguard import clock
    from deployguard.models import DeploymentEvent, EventType, Severity
    from deployguard.storage import outbox
    from deployguard_local.chaos.faults import FaultInjector

    github, jira = servers
    _secrets()
    deployment, _ = canary_in_flight(embedded)
    eng = engine(_settings(github, jira))
    repository = DeploymentRepository()
    event = DeploymentEvent.about(deployment, EventType.ROLLBACK_FAILED, "Rollback failed", "the alias could not be "
                                  "moved", severity=Severity.CRITICAL)  # fmt: skip

    def alert_record(request: Any) -> bool:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        return '"ALERT#' in body

    with FaultInjector(embedded.clock) as faults:
        plan = faults.on("dynamodb", "PutItem", ["throttle"] * 9, when=alert_record)
        outbox.announce(repository, eng.publisher, event, alert=eng.on_event)
        assert plan.injected == 9
    [incident] = eng.incident_store.open_incidents()
    assert github.issues == {} and jira.issues == {}  # the run failed before its issue
    assert _audit(deployment.deployment_id, "alerting_failed")

    embedded.clock.advance(61)
    outbox.drain(repository, eng.publisher, repository.outbox(clock.now()), alert=eng.on_event)
    stored = eng.incident_store.get(incident.incident_id)
    assert len(github.issues) == len(jira.issues) == 1  # opened by the retry
    assert set(stored.issues) == {"github", "jira"}
    assert stored.alert_count == 1 and len(stored.alert_ids) == 1  # the same alert: joined once
    assert [t.action for t in stored.timeline].count("alert_joined") == 0
    assert len(_audit(deployment.deployment_id, "issue_opened")) == 2
    assert len(_audit(deployment.deployment_id, "incident_opened")) == 1

    eng.on_assessment(deployment, failing_assessment(deployment))  # other incidents: one issue each, no second
    assert len(github.issues) == len(jira.issues) == len(eng.incident_store.open_incidents())
