"""Escalation under faults and changes: a page claimed but answered with an error is sent late, never
skipped; a page whose record was applied but reported failed goes out once (one event id per page); a
rolled-back deployment's incidents page no more (PagerDuty is not triggered again after the rollback's
resolve); alternating rules of one group do not restart escalation; an acknowledgement repeated by the
same person after an error is taken. Faults through botocore's hooks (``FaultInjector``: "ambiguous" is
a write applied and answered 500), time on the simulated clock."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from deployguard.alerts.engine import AlertEngine
from deployguard.alerts.models import Alert
from deployguard.alerts.settings import AlertingSettings
from deployguard.incidents.escalation import Escalator, page_event_id
from deployguard.incidents.models import IncidentStatus
from deployguard.incidents.repository import IncidentRepository
from deployguard.incidents.service import IncidentService
from deployguard.models import Deployment, DeploymentEvent, DeploymentStatus, EventType, LambdaTarget, Severity
from deployguard.notification.pagerduty import PagerDutyChannel, alert_event_key
from deployguard.workflows.reconciler import publish_outbox
from deployguard_local.chaos.faults import FaultInjector, body_mentions

STUCK = ["ambiguous"] + ["throttle"] * 12  # applied, answered 500, then throttled until botocore gives up


def _alert(rule: str = "canary-issue", policy: str = "emergency", **kw: Any) -> Alert:
    fields: dict[str, Any] = dict(
        rule=rule, group="canary", grouping_key="dg-1#canary", severity=Severity.CRITICAL, source="assessment",
        deployment_id="dg-1", service="checkout-api", environment="production", version="2", title="t",
        message=rule, expression="x", escalation_policy=policy,
    )  # fmt: skip
    fields.update(kw)
    return Alert(**fields)


def _setup(repo: Any, publisher: Any) -> tuple[IncidentService, Escalator]:
    settings = AlertingSettings.model_validate({})
    service = IncidentService(settings, IncidentRepository(repo), publisher)
    return service, Escalator(settings, service.incidents, publisher)


def _pages(publisher: Any) -> list[tuple[int, int, str]]:
    """(page, step, event id) of every page published, in order."""
    return [
        (e.details["page"], e.details["escalation_step"], e.event_id)
        for e in publisher.events
        if e.details.get("kind") == "page"
    ]


def test_a_claim_applied_but_answered_with_an_error_is_read_back_and_its_page_sent(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    service, escalator = _setup(repo, publisher)
    incident, _ = service.open_or_join(_alert())
    assert [p.page_number for p in escalator.escalate_due()] == [1]
    sim_clock.advance(120)
    with FaultInjector(sim_clock) as faults:
        faults.on("dynamodb", "PutItem", STUCK, when=body_mentions("step 2 of policy"))
        sent = escalator.escalate_due()
        assert faults.injected  # the claim's write was stored and reported failed
    assert [(p.page_number, p.step) for p in sent] == [(2, 1)]  # read back: stored, so sent now
    for _ in range(3):
        sim_clock.advance(60)
        escalator.escalate_due()
    pages = _pages(publisher)
    assert [(n, s) for n, s, _ in pages] == [(1, 0), (2, 1)]  # step 2 (the managers) paged, once
    stored = service.incidents.get(incident.incident_id)
    assert stored.escalation.claimed is None and stored.escalation.pages == 2


def test_a_claim_left_unsent_is_sent_late_by_the_next_tick(repo: Any, publisher: Any, sim_clock: Any) -> None:
    """The claim is stored, its read-back fails too: the next tick finds the claim and sends it."""
    service, escalator = _setup(repo, publisher)
    incident, _ = service.open_or_join(_alert())
    escalator.escalate_due()
    sim_clock.advance(120)
    with FaultInjector(sim_clock) as faults:
        faults.on("dynamodb", "PutItem", STUCK, when=body_mentions("step 2 of policy"))
        reads = iter(range(100))
        of_incident = body_mentions(f"INCIDENT#{incident.incident_id}")
        faults.on("dynamodb", "GetItem", ["throttle"] * 12,
                  when=lambda request: of_incident(request) and next(reads) >= 1)  # the read-back  # fmt: skip
        assert escalator.escalate_due() == []
    claimed = service.incidents.get(incident.incident_id).escalation.claimed
    assert claimed is not None and claimed.page == 2
    sim_clock.advance(60)
    late = escalator.escalate_due()
    assert [(p.page_number, p.step) for p in late] == [(2, 1)]
    assert late[0].at == claimed.at and late[0].event_id == claimed.event_id  # the claim's time and id
    assert [(n, s) for n, s, _ in _pages(publisher)] == [(1, 0), (2, 1)]


def test_a_page_record_applied_but_reported_failed_goes_out_once(repo: Any, publisher: Any, sim_clock: Any) -> None:
    service, escalator = _setup(repo, publisher)
    incident, _ = service.open_or_join(_alert())
    escalator.escalate_due()
    sim_clock.advance(120)
    with FaultInjector(sim_clock) as faults:
        faults.on("dynamodb", "PutItem", STUCK, when=body_mentions("PAGE 2:"))
        assert escalator.escalate_due() == []  # not known recorded: kept, never given back
    for _ in range(2):
        sim_clock.advance(60)
        escalator.escalate_due()
        publish_outbox(repo, publisher)
    pages = _pages(publisher)
    assert [(n, s) for n, s, _ in pages] == [(1, 0), (2, 1)]  # step 2 once, though recorded twice over
    assert pages[1][2] == page_event_id(incident.incident_id, "emergency", 1, 2)
    stored = service.incidents.get(incident.incident_id)
    assert [t.action for t in stored.timeline].count("paged") == 2 and stored.escalation.claimed is None


def test_alternating_rules_of_one_group_do_not_restart_escalation(repo: Any, publisher: Any, sim_clock: Any) -> None:
    service, escalator = _setup(repo, publisher)
    incident, _ = service.open_or_join(_alert("canary-issue", "emergency"))
    for minute in range(12):  # the two rules fire in turn, each minute, with their own policies
        if minute:
            rule, policy = ("high-error-rate", "standard") if minute % 2 else ("canary-issue", "emergency")
            service.open_or_join(_alert(rule, policy))
        escalator.escalate_due()
        sim_clock.advance(60)
    pages = [(n, s) for n, s, _ in _pages(publisher)]
    assert pages[:2] == [(1, 0), (2, 1)]  # the managers are paged at their step, 120 s in
    assert {e.details["escalation_policy"] for e in publisher.events if e.details.get("kind") == "page"} == {
        "emergency"
    }
    assert service.incidents.get(incident.incident_id).escalation.policy == "emergency"


def test_a_strictly_more_severe_alert_goes_on_from_the_step_reached(repo: Any, publisher: Any, sim_clock: Any) -> None:
    service, escalator = _setup(repo, publisher)
    incident, _ = service.open_or_join(_alert("high-error-rate", "standard", severity=Severity.ERROR))
    escalator.escalate_due()  # standard, step 1: oncall-primary
    sim_clock.advance(60)
    service.open_or_join(_alert("canary-issue", "emergency"))  # critical: the stricter policy, at once
    escalator.escalate_due()
    pages = [(e.details["escalation_policy"], e.details["escalation_step"]) for e in publisher.events
             if e.details.get("kind") == "page"]  # fmt: skip
    assert pages == [("standard", 0), ("emergency", 1)]  # not step 0 again: the emergency managers
    assert service.incidents.get(incident.incident_id).escalation.pages == 2


def test_a_stricter_policy_with_fewer_steps_still_pages_its_routes(repo: Any, publisher: Any, sim_clock: Any) -> None:
    """Two pages into a three-step policy, a critical alert brings a one-step policy without repeat: its routes
    are paged once, not skipped as "every step paged"."""
    settings = AlertingSettings.model_validate({"escalation": {"policies": {
        "standard": {"steps": [{"routes": ["a"], "wait_seconds": 60}, {"routes": ["b"], "wait_seconds": 60},
                           {"routes": ["c"], "wait_seconds": 60}]},
        "emergency": {"steps": [{"routes": ["boss"], "wait_seconds": 60}], "repeat_every_seconds": None},
    }}})  # fmt: skip
    service = IncidentService(settings, IncidentRepository(repo), publisher)
    escalator = Escalator(settings, service.incidents, publisher)
    service.open_or_join(_alert("high-error-rate", "standard", severity=Severity.ERROR))
    escalator.escalate_due()
    sim_clock.advance(60)
    escalator.escalate_due()
    sim_clock.advance(10)
    service.open_or_join(_alert("canary-issue", "emergency"))
    escalator.escalate_due()
    routes = [e.details["routes"] for e in publisher.events if e.details.get("kind") == "page"]
    assert routes == [["a"], ["b"], ["boss"]]


def test_an_acknowledgement_stored_but_reported_failed_is_taken_when_repeated(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    service, _ = _setup(repo, publisher)
    incident, _ = service.open_or_join(_alert())
    with FaultInjector(sim_clock) as faults:
        faults.on("dynamodb", "PutItem", STUCK, when=body_mentions("acknowledged by alice"))
        first = service.acknowledge(incident.incident_id, "alice")  # read back: it is stored
    assert first.status == IncidentStatus.ACKNOWLEDGED
    again = service.acknowledge(incident.incident_id, "alice")
    assert again.status == IncidentStatus.ACKNOWLEDGED and again.acknowledged_at == first.acknowledged_at
    try:
        service.acknowledge(incident.incident_id, "bob")
    except Exception as exc:  # someone else: not open
        assert "not open" in str(exc)
    else:
        raise AssertionError("bob acknowledged an acknowledged incident")


def test_a_rolled_back_deployment_pages_no_more_and_pagerduty_stays_resolved(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    target = LambdaTarget(function_name="checkout-api", alias="live", stable_version="1", new_version="2")
    deployment = Deployment(deployment_id="dg-1", service="checkout-api", environment="production", version="2",
                            target=target, status=DeploymentStatus.IN_PROGRESS)  # fmt: skip
    repo.create_deployment(deployment)
    engine = AlertEngine(AlertingSettings.model_validate({"remediation": {"plans": []}}), repo, publisher)
    incident, _ = engine.incidents.open_or_join(_alert())
    engine.on_tick()  # page 1
    sim_clock.advance(60)
    _roll_back(repo)
    rolled_at = sim_clock()
    for _ in range(30):  # half an hour of minute ticks (the emergency policy would page 6 times)
        sim_clock.advance(60)
        engine.on_tick()
    assert [n for n, _, _ in _pages(publisher)] == [1]
    stored = engine.incident_store.get(incident.incident_id)
    assert stored.escalation.next_at is None and stored.escalation.stopped_reason == "deployment dg-1 rolled back"
    assert stored.status == IncidentStatus.OPEN  # quiet, for a person to resolve

    # what PagerDuty is told, in order: page 1, then the rollback's resolve; nothing triggers it again
    channel = PagerDutyChannel("pd", "https://events.pagerduty.com/v2/enqueue", lambda: SecretStr("rk"),
                               alert_keys=lambda _: [alert_event_key(publisher.events[0])])  # fmt: skip
    rolled = DeploymentEvent(event_type=EventType.ROLLBACK_COMPLETED, deployment_id="dg-1", service="checkout-api",
                             version="2", environment="production", severity=Severity.WARNING, title="rolled back",
                             message="m", at=rolled_at)  # fmt: skip
    in_order = sorted([*publisher.events, rolled], key=lambda e: e.at)  # the rollback's resolve at its time
    told = [m.description for e in in_order for m in channel.render(e)]
    key = f"deployguard/dg-1/incident/{incident.incident_id}"
    assert told[-1] == f"pagerduty resolve {key}" and told.count(f"pagerduty trigger {key}") >= 1
    assert all(not d.startswith("pagerduty trigger") for d in told[told.index(f"pagerduty resolve {key}") :])


def _roll_back(repo: Any) -> None:
    deployment = repo.get_deployment("dg-1")
    deployment.status = DeploymentStatus.ROLLED_BACK
    repo.save_deployment(deployment)


def test_a_live_releases_alert_joining_a_rolled_back_ones_incident_resumes_escalation(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    """Grouped without the deployment (service, environment, group): dg-1's canary opened the incident and was
    rolled back, which stopped its escalation; dg-2, live, then alerts into the same incident: it pages again."""
    target = LambdaTarget(function_name="checkout-api", alias="live", stable_version="1", new_version="2")
    for deployment_id in ("dg-1", "dg-2"):
        repo.create_deployment(Deployment(deployment_id=deployment_id, service="checkout-api", environment="production",
                                          version="2", target=target, status=DeploymentStatus.IN_PROGRESS))  # fmt: skip
    engine = AlertEngine(AlertingSettings.model_validate({"remediation": {"plans": []}}), repo, publisher)
    incident, _ = engine.incidents.open_or_join(_alert(grouping_key="checkout-api#production#canary"))
    engine.on_tick()  # page 1
    _roll_back(repo)
    sim_clock.advance(120)
    engine.on_tick()  # the rollback stops it
    assert engine.incident_store.get(incident.incident_id).escalation.stopped_reason == "deployment dg-1 rolled back"
    sim_clock.advance(60)
    joined, _ = engine.incidents.open_or_join(
        _alert(grouping_key="checkout-api#production#canary", deployment_id="dg-2", alert_id="al-2")
    )
    assert joined.incident_id == incident.incident_id and joined.latest_deployment_id == "dg-2"
    engine.on_tick()
    assert [n for n, _, _ in _pages(publisher)] == [1, 2]  # goes on from the step reached, for dg-2


def test_a_person_escalates_an_incident_the_rollback_quieted(repo: Any, publisher: Any, sim_clock: Any) -> None:
    """The rollback stopped the automatic pages; a person asking for the next step still gets it."""
    target = LambdaTarget(function_name="checkout-api", alias="live", stable_version="1", new_version="2")
    repo.create_deployment(Deployment(deployment_id="dg-1", service="checkout-api", environment="production",
                                      version="2", target=target, status=DeploymentStatus.IN_PROGRESS))  # fmt: skip
    engine = AlertEngine(AlertingSettings.model_validate({"remediation": {"plans": []}}), repo, publisher)
    incident, _ = engine.incidents.open_or_join(_alert())
    engine.on_tick()  # page 1
    _roll_back(repo)
    sim_clock.advance(120)
    engine.on_tick()  # stopped
    from deployguard.config import DeployGuardConfig
    from deployguard.readmodels.deployments import DeploymentReader
    from deployguard.workflows.console import OperationsConsole
    from deployguard.workflows.control import CanaryControlService

    control = CanaryControlService(DeployGuardConfig.model_validate({}), repo, publisher)
    console = OperationsConsole(DeploymentReader(repo), control, engine)
    result = console.escalate(incident.incident_id, "alice", "need the database team")
    assert result.page is not None and result.page.page_number == 2
    assert [n for n, _, _ in _pages(publisher)] == [1, 2]
