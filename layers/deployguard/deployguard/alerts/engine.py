"""The one entry point of alerting: rules -> alerts -> incidents -> remediation -> paging.

    engine = AlertEngine.for_config(config, repository, publisher)
    engine.on_assessment(deployment, assessment, metric_values, baseline_values)  # after each assessment
    engine.on_event(event)                     # after announcing a deployment event
    engine.guarded(deployment_id, actor, what, engine.on_event, event)   # the same, never raising
    engine.on_tick()                           # every minute: escalation, auto-resolution, approved actions

For every rule that fires the engine, in this order (remediation first: an emergency
rollback must land within ``remediation.emergency_deadline_seconds`` of the decision, or the
incident's first escalation routes are paged at once, see ``_enforce_deadline``):
1. applies the rule's cooldown and rate limit (per rule and grouping key), which hold back only the
   alert's announcement (step 4): a suppressed alert is recorded, opens or joins its incident and runs
   its remediation like a fired one (an automatic rollback must never wait for a quiet channel);
2. stores the alert (deployment history ``ALERT#``) and opens or joins the incident of
   its grouping key (one per deployment and rule group by default);
3. runs the remediation plans that match, automatically or as an approval request;
4. publishes the alert (``EventType.ALERT``, ``details.kind = "alert"``, ``details.routes``), unless suppressed;
5. pages the first escalation step at once when the incident is new (or its policy rose).
Every step is in the deployment's audit trail.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import Field

from deployguard import clock
from deployguard.alerts.evaluator import Evaluation, RuleEvaluator
from deployguard.alerts.models import Alert, AlertStatus
from deployguard.exceptions import DeployGuardError, NotFoundError
from deployguard.incidents.escalation import Escalator, Page
from deployguard.models import Assessment, Deployment, DeploymentEvent, EventType, Model, Severity
from deployguard.remediation.models import Outcome, RemediationResult
from deployguard.remediation.targets import TargetAllowlist
from deployguard.storage import outbox

if TYPE_CHECKING:  # imported where first used: a function that raises no alert never loads them (cold start)
    from deployguard.alerts.settings import AlertingSettings, PlanStep
    from deployguard.aws.events import EventPublisher
    from deployguard.incidents.models import Incident
    from deployguard.incidents.repository import IncidentRepository
    from deployguard.incidents.service import IncidentService
    from deployguard.incidents.trackers import IssueTrackerSync
    from deployguard.remediation.executor import RemediationExecutor
    from deployguard.remediation.models import Approval
    from deployguard.storage.repository import DeploymentRepository

ACTOR = "deployguard:alerts"
COOLDOWN = "ALERT-COOLDOWN"
ROLLBACK_TYPES = frozenset({"rollback", "lambda_rollback", "codedeploy_stop", "ecs_rollback"})
UNCONFIRMED = (Outcome.FAILED, Outcome.REFUSED, Outcome.EXHAUSTED)
logger = logging.getLogger(__name__)


class GuardConfig(Protocol):
    """What the engine needs of DeployGuardConfig."""

    @property
    def alerting(self) -> AlertingSettings: ...

    @property
    def services(self) -> Mapping[str, Any]: ...


class TickReport(Model):
    at: datetime
    pages: list[Page] = Field(default_factory=list)
    resolved: list[str] = Field(default_factory=list, description="incidents resolved automatically")
    remediations: list[RemediationResult] = Field(default_factory=list)
    alerts: list[Alert] = Field(default_factory=list, description="alerts of deployment-only rules (long-running)")
    tracker_syncs: list[dict[str, Any]] = Field(
        default_factory=list, description="issue-tracker news sent again after a tracker failed it"
    )
    announced: list[str] = Field(
        default_factory=list, description="events of incident changes written by the tick (their writer failed)"
    )


class AlertEngine:
    """Rules are evaluated on every call; incidents, remediation and issue trackers are built
    (and their modules imported) the first time an alert or the tick needs them."""

    def __init__(
        self,
        settings: AlertingSettings,
        repository: DeploymentRepository,
        publisher: EventPublisher | None,
        *,
        allowlist: TargetAllowlist | None = None,
        local_mode: bool = False,
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.publisher = publisher
        self.local_mode = local_mode
        self.evaluator = RuleEvaluator(settings)
        self.allowlist = allowlist or TargetAllowlist(settings.remediation.allowed_targets)
        # the guard's own counts, where they happen: ``count("AlertsRaised", 1)`` for an alert raised (fired, not
        # suppressed; a retry of the same alert not again), ``count("IncidentPages", n)`` for pages sent. The
        # functions' engine writes them as EMF (deployguard.workflows.runtime.alert_engine); None: not counted
        self.count: Callable[[str, int], None] | None = None

    @functools.cached_property
    def incident_store(self) -> IncidentRepository:
        from deployguard.incidents.repository import IncidentRepository

        return IncidentRepository(self.repository)

    @functools.cached_property
    def incidents(self) -> IncidentService:
        from deployguard.incidents.service import IncidentService

        return IncidentService(self.settings, self.incident_store, self.publisher)

    @functools.cached_property
    def remediation(self) -> RemediationExecutor:
        from deployguard.remediation.executor import RemediationExecutor

        executor = RemediationExecutor(self.settings.remediation, self.repository, self.publisher, self.allowlist)
        executor.routes_for = self._first_routes  # an approved action that cannot be done pages as a rollback does
        return executor

    @functools.cached_property
    def trackers(self) -> IssueTrackerSync:
        from deployguard.incidents.trackers import IssueTrackerSync

        return IssueTrackerSync(self.settings, self.incident_store, local_mode=self.local_mode)

    @classmethod
    def for_config(
        cls,
        config: GuardConfig,
        repository: DeploymentRepository,
        publisher: EventPublisher | None,
        *,
        local_mode: bool = False,
    ) -> AlertEngine:
        """The engine of a DeployGuardConfig: its ``alerting`` section, and its services' functions
        and ECS services allowed."""
        settings = config.alerting
        functions = [getattr(s, "function_name", None) for s in config.services.values()]
        ecs_services = [getattr(s, "ecs_service", None) for s in config.services.values()]
        allowlist = TargetAllowlist(
            settings.remediation.allowed_targets, [f for f in functions if f], [e for e in ecs_services if e]
        )
        return cls(settings, repository, publisher, allowlist=allowlist, local_mode=local_mode)

    @property
    def escalator(self) -> Escalator:
        if self.publisher is None:
            raise DeployGuardError("escalation needs an EventPublisher (EVENTS_TOPIC_ARN)")
        return Escalator(self.settings, self.incident_store, self.publisher)

    # ------------------------------------------------------------------ entry points

    def on_assessment(
        self,
        deployment: Deployment,
        assessment: Assessment,
        metric_values: Mapping[str, float | None] | None = None,
        baseline_values: Mapping[str, float | None] | None = None,
    ) -> list[Alert]:
        """Evaluate the rules on an assessment; returns every alert (fired and suppressed)."""
        decided_at, decided = time.monotonic(), clock.now()
        evaluation = self.evaluator.evaluate(
            deployment=deployment,
            assessment=assessment,
            metric_values=metric_values,
            baseline_values=baseline_values,
            now=decided,
        )
        held = self._readings_after_promotion(evaluation) if assessment.details.get("kind") == "post_deployment" else []
        alerts = self._process(evaluation, deployment, decided_at, decided)
        self.incidents.note_evaluation(
            deployment.deployment_id, [a.grouping_key for a in alerts + held], [r.name for r in evaluation.clear]
        )
        return alerts

    def _readings_after_promotion(self, evaluation: Evaluation) -> list[Alert]:
        """A post-deployment look's readings (the latest periods since the promotion against those before the
        deployment) keep or clear the incidents the canary's readings opened: a metric rule true on them keeps
        its incident from clearing, false clears it; it raises no alert of its own (after the promotion that
        is ``post-deployment-anomaly``'s, against the service's last 24 hours). Takes those alerts out of
        ``evaluation.fired`` and returns them."""
        from deployguard.alerts.fields import METRIC_FIELDS

        metric = METRIC_FIELDS | set(self.settings.custom_fields)
        held = []
        for alert in evaluation.fired:
            rule = self.settings.rule(alert.rule)
            if rule is not None and set(rule.compiled.fields) & metric:
                held.append(alert)
        evaluation.fired = [a for a in evaluation.fired if a not in held]
        return held

    def on_event(self, event: DeploymentEvent, deployment: Deployment | None = None) -> list[Alert]:
        """Evaluate the rules on a deployment event (failed, rollback failed, long running ...)."""
        if event.event_type == EventType.ALERT:
            return []  # the engine's own announcements never raise alerts
        decided_at, decided = time.monotonic(), clock.now()
        if deployment is None:
            deployment = self.repository.find_deployment(event.deployment_id)
        evaluation = self.evaluator.evaluate(deployment=deployment, event=event, now=decided)
        alerts = self._process(evaluation, deployment, decided_at, decided)
        if deployment is not None and deployment.status.is_terminal:  # it ended: what only a running deployment
            # can be (long-running) is clear now, and its incident resolves after the clear window
            self.incidents.note_evaluation(
                deployment.deployment_id, [a.grouping_key for a in alerts], [r.name for r in evaluation.clear]
            )
        return alerts

    def guarded(self, deployment_id: str, actor: str, what: str, call: Callable[..., object], *args: Any) -> None:
        """Run an entry point for a workflow (recorder, hook, monitoring): a failure of alerting is
        logged and audited under the workflow's actor, never raised into its own work."""
        try:
            call(*args)
        except Exception as exc:
            logger.exception("alert engine failed", extra={"deployment_id": deployment_id, "on": what})
            self.repository.audit(deployment_id, "alerting_failed", actor, f"{what}: {type(exc).__name__}: {exc}")

    @contextmanager
    def cycle(self, incident_items: list[dict[str, Any]], approval_items: list[dict[str, Any]]) -> Iterator[None]:
        """The minute tick's cycle: the open incidents and approvals its one read found, used by
        every assessment and the alert tick of the cycle (no read of their own)."""
        with self.incident_store.one_read_per_cycle(incident_items), \
                self.remediation.store.one_read_per_cycle(approval_items):  # fmt: skip
            yield

    def on_tick(self, now: datetime | None = None, deployments: Iterable[Deployment] | None = None) -> TickReport:
        """Every minute: deployment-only rules (on ``deployments``, the active ones the minute tick
        read, else read here), escalation, automatic resolution, approved actions."""
        at = now or clock.now()
        report = TickReport(at=at)
        if not self.settings.enabled:
            return report
        report.announced = self.incidents.announce_pending()  # incident changes whose announcement failed
        with_incidents = {i.current_deployment_id for i in self.incident_store.open_incidents()}  # the cycle's read
        for deployment in self.repository.active_deployments() if deployments is None else deployments:
            try:  # one deployment's failure (e.g. its incident cannot be read) is its own: the tick goes on
                evaluation = self.evaluator.evaluate(deployment=deployment, now=at)
                alerts = self._process(evaluation, deployment, time.monotonic(), at)
                report.alerts.extend(alerts)
                if deployment.deployment_id in with_incidents:  # the deployment-only rules clear as the assessments' do
                    self.incidents.note_evaluation(
                        deployment.deployment_id, [a.grouping_key for a in alerts], [r.name for r in evaluation.clear]
                    )
            except Exception:
                logger.exception(
                    "alert tick failed for a deployment", extra={"deployment_id": deployment.deployment_id}
                )
        if self.publisher is not None:
            report.pages = self.escalator.escalate_due(at)
        resolved = self.incidents.auto_resolve_due(at)
        report.resolved = [i.incident_id for i in resolved]
        self._track_pages(report.pages)
        for incident in resolved:
            self.trackers.on_news(incident, "resolved", "Resolved automatically: its conditions stayed clear.")
        done = set(report.resolved)
        open_incidents = {i.incident_id: i for i in self.incident_store.open_incidents() if i.incident_id not in done}
        report.remediations = self.remediation.run_approved(open_incidents)
        if self.settings.issue_trackers:  # news a tracker failed (a close once resolved gets no more news), last
            report.tracker_syncs = self.trackers.retry_pending(at)
        return report

    # ------------------------------------------------------------------ people (the CLI)

    def acknowledge(self, incident_id: str, by: str, notes: str = "") -> Incident:
        incident = self.incidents.acknowledge(incident_id, by, notes)
        self.trackers.on_news(incident, "acknowledged", f"Acknowledged by {by}" + (f": {notes}" if notes else "."))
        return incident

    def resolve(self, incident_id: str, by: str, notes: str = "") -> Incident:
        incident = self.incidents.resolve(incident_id, by, notes)
        self.trackers.on_news(incident, "resolved", f"Resolved by {by}" + (f": {notes}" if notes else "."))
        return incident

    def send_page(self, incident_id: str, at: datetime, *, by_person: bool = False) -> Page | None:
        """Send the incident's page if it is due (:meth:`Escalator.page_if_due`; ``by_person``: a person's
        escalation, which pages even after a rollback), counted in IncidentPages and noted on its issue like
        every page: the automatic ones (this engine) and the ones a person asks for (the console's escalate)."""
        sent = self.escalator.page_if_due(incident_id, at, by_person=by_person)
        self._track_pages([sent])
        return sent

    def escalate(self, incident_id: str, by: str, notes: str = "") -> tuple[Incident, Page | None]:
        """A person pages the incident's next escalation step now (the console's escalate): the page is
        counted and told to the incident's issue as the tick's are."""
        now = clock.now()
        self.incidents.escalate(incident_id, by, notes, now)
        page = self.send_page(incident_id, now, by_person=True)
        return self.incident_store.get(incident_id), page

    def _track_pages(self, pages: Iterable[Page | None]) -> None:
        """Count the pages sent; comment escalations (page 2 on) on the incidents' issues; the first page is
        the opening."""
        pages = [page for page in pages if page is not None]
        self._count("IncidentPages", len(pages))
        for page in pages:
            if page is not None and page.page_number > 1 and self.trackers.enabled:
                incident = self.incident_store.get(page.incident_id)
                routes = ", ".join(page.routes)
                self.trackers.on_news(incident, "paged", f"Escalated: page {page.page_number} to {routes}.")

    def decide(self, approval_id: str, by: str, approve: bool, notes: str = "") -> Approval:
        return self.remediation.decide(approval_id, by, approve, notes)

    def plan_steps(self, incident: Incident, deployment: Deployment) -> list[PlanStep]:
        """The remediation steps configured for an incident (from its rules)."""
        steps: list[PlanStep] = []
        for rule_name in incident.rules:
            rule = self.settings.rule(rule_name)
            if rule is None:
                continue
            for step in self._steps_for(rule_name, rule.incident_group, incident, deployment):
                if step.action not in {s.action for s in steps}:
                    steps.append(step)
        return steps

    def remediate(
        self, incident_id: str, by: str, action: str | None = None, *, dry_run: bool = False, force: bool = False
    ) -> list[RemediationResult]:
        """A person runs remediation of an incident (the configured actions, or one named). With
        ``remediation.dry_run`` set it only plans whatever ``dry_run`` says (it can only make it drier).

        It acts on the incident's latest deployment (``latest_deployment_id``: the latest alert's), and is
        refused, as an approved action is, when the incident is resolved or a newer deployment of the service
        and environment started since (rolling back would undo that release), unless the target is in the wanted
        state already (a no-op); ``force`` runs it all the same."""
        from deployguard.alerts.settings import PlanStep

        incident = self.incident_store.get(incident_id)
        deployment_id = incident.latest_deployment_id or incident.deployment_id
        deployment = self.repository.find_deployment(deployment_id)
        if deployment is None:
            raise NotFoundError(f"deployment {deployment_id} of incident {incident_id} not found")
        steps = [PlanStep(action=action, mode="auto")] if action else self.plan_steps(incident, deployment)
        if not steps:
            raise DeployGuardError(f"no remediation is configured for incident {incident_id}; name one with --action")
        why, newer = ("", None) if force else self._not_now(incident, deployment)
        results = []
        for step in steps:
            result = self.remediation.run(
                incident, deployment, step, actor=by, manual=True, dry_run=dry_run or None, refuse_unless_noop=why
            )
            results.append(result)
            # on the newer deployment only a run refused for it (a dry run or a no-op was not: nothing to record)
            if newer is not None and result.details.get("refused_now"):
                self.repository.audit(
                    newer.deployment_id, "stale_remediation_refused", by,
                    f"{by}'s {result.action} of incident {incident.incident_id} for {deployment.deployment_id} "
                    "refused: it would have undone this deployment",
                    incident_id=incident.incident_id, remediation_action=result.action, target=result.target,
                )  # fmt: skip
        return results

    def _not_now(self, incident: Incident, deployment: Deployment) -> tuple[str, Deployment | None]:
        """Why a person's remediation of ``incident`` is refused ("" when it is not): the checks an approved
        action gets (its incident still open, no newer deployment its rollback would undo); and that newer
        deployment, on which :meth:`remediate` audits a run actually refused."""
        if not incident.is_open:
            return (
                f"incident {incident.incident_id} is resolved (by {incident.resolved_by}); "
                "run it with --force to act anyway"
            ), None
        newer = self.repository.superseding(deployment)
        if newer is None:
            return "", None
        return (
            f"deployment {newer.deployment_id} (version {newer.version}) of {deployment.service} in "
            f"{deployment.environment} started after {deployment.deployment_id}: remediating this incident would "
            "undo it; run it with --force to act anyway"
        ), newer

    # ------------------------------------------------------------------ internals

    def _count(self, name: str, value: int) -> None:
        if self.count is not None and value:
            try:
                self.count(name, value)
            except Exception:  # a metric never stops alerting
                logger.exception("cannot count", extra={"metric": name})

    def _steps_for(self, rule: str, group: str, incident: Incident, deployment: Deployment) -> Iterable[PlanStep]:
        for plan in self.settings.remediation.plans:
            if plan.matches(rule, group, incident.severity, deployment.environment, deployment.target.kind):
                yield from plan.actions

    def _process(
        self, evaluation: Evaluation, deployment: Deployment | None, decided_at: float, decided: datetime
    ) -> list[Alert]:
        """Raise the fired alerts. ``decided_at`` (``time.monotonic()``) and ``decided`` (the clock's
        time) are this run's decision: when the rules were evaluated, which for an alert raised again (a
        retry from the outbox) is after the alert's own time (its first raise's)."""
        if not evaluation.fired:
            return []
        out = []
        for alert in evaluation.fired:
            rule = self.settings.rule(alert.rule)
            assert rule is not None
            cooldown = f"{alert.rule}#{alert.grouping_key}"
            cooling = False  # this alert took the rule's cooldown: released if it cannot be raised
            if rule.cooldown_seconds and not (
                cooling := self.repository.claim_once(COOLDOWN, cooldown, timedelta(seconds=rule.cooldown_seconds))
            ):
                alert.status = AlertStatus.SUPPRESSED_COOLDOWN
            elif not self.incident_store.take_rate_slot(  # a retry of the same alert (same id) takes no second slot
                cooldown,  # per rule and grouping key: one busy incident never silences another deployment's
                rule.rate_limit.max_alerts,
                rule.rate_limit.per_seconds,
                alert.alert_id if alert.derived else None,
            ):
                alert.status = AlertStatus.SUPPRESSED_RATE_LIMIT
                if cooling:  # not announced: the next alert of the group may be, once the rate allows it
                    with suppress(Exception):
                        self.repository.release(COOLDOWN, cooldown)
                    cooling = False
                self.repository.audit(
                    alert.deployment_id,
                    "alert_rate_limited",
                    ACTOR,
                    f"{alert.rule}: more than {rule.rate_limit.max_alerts} alerts of {alert.grouping_key} "
                    f"in {rule.rate_limit.per_seconds} s (announcement held back; incident and remediation go on)",
                    rule=alert.rule,
                    grouping_key=alert.grouping_key,
                )
            try:
                self._raise(alert, deployment, decided_at, decided)
            except Exception:  # its retry (the outbox, the next look) must not find the cooldown taken
                if cooling:
                    with suppress(Exception):
                        self.repository.release(COOLDOWN, cooldown)
                raise
            out.append(alert)
        return out

    def _raise(self, alert: Alert, deployment: Deployment | None, decided_at: float, decided: datetime) -> None:
        """An alert: its incident, remediation, announcement (a fired one only: not one its rule's cooldown
        or rate limit suppressed) and first page.

        Idempotent per alert id for an alert of an event or an assessment (:attr:`Alert.derived`): the
        outbox runs the engine on an event again when a run failed part-way, and the retry raises the
        same alert (same id). It joins its incident once (:meth:`IncidentService.open_or_join`); its
        record is written once (keyed on its id), and the retry takes the time the first run raised it
        at from it; its ``alert_raised`` audit entry is keyed on its id and that time, and its ``alert``
        event has an id derived from its id and that time, so both are written once, and the outbox
        records and publishes the event once (the channels are told once). What the first run did not
        do (remediation not confirmed, the page, an issue) is done by the retry."""
        incident, opened = self.incidents.open_or_join(alert)
        alert.incident_id = incident.incident_id
        raised_at = alert.at
        alert.at = self.incident_store.add_alert(alert).at  # raised before (a retry): that time, not this run's
        announced = alert.status == AlertStatus.FIRED  # cooldown and rate limit hold back the announcement only
        if alert.at == raised_at and announced:  # raised now, not a retry's second raise
            self._count("AlertsRaised", 1)
        if announced:
            self._audit_raised(alert, incident)
        if deployment is not None and incident.is_open:  # acknowledged too: a person looking does not stop a rollback
            self._remediate(alert, incident, deployment, decided_at, decided, announced)
        if announced:
            self._publish(alert, incident, opened or _opened_by(alert, incident))
        if self.trackers.enabled and incident.is_open:  # by the incident's state, not this attempt's: a retry opens
            # what a failure missed (a resolved one, which a source delivered again joined, gets none)
            self.trackers.open_missing(incident)
        due = incident.escalation.next_at
        if self.publisher is not None and due is not None and due <= decided:  # paged as of this run's decision
            self.send_page(incident.incident_id, decided)

    def _audit_raised(self, alert: Alert, incident: Incident) -> None:
        """The ``alert_raised`` entry: once per alert of an event or assessment (keyed on its id and
        time, the same on a retry); an entry per alert of the tick (a new alert each time)."""
        reason = f"{alert.rule} ({alert.severity.value}): {alert.message}"
        details: dict[str, Any] = {"alert_id": alert.alert_id, "rule": alert.rule, "incident_id": incident.incident_id,
                                   "values": alert.values, "baseline": alert.baseline}  # fmt: skip
        if alert.derived:
            self.repository.audit_once(alert.deployment_id, alert.alert_id, alert.at, "alert_raised", ACTOR, reason,
                                       **details)  # fmt: skip
        else:
            self.repository.audit(alert.deployment_id, "alert_raised", ACTOR, reason, **details)

    def _remediate(
        self,
        alert: Alert,
        incident: Incident,
        deployment: Deployment,
        decided_at: float,
        decided: datetime,
        announced: bool = True,
    ) -> None:
        """The incident's plan for this alert. One its rule's cooldown or rate limit held back (not
        ``announced``) runs the automatic steps only (a stop or rollback never waits on a cooldown) and pages
        only an attempt that failed now: asking people (an approval, asked again each minute after they said
        no) and what was reported already (refused, out of attempts) wait for an announced alert. An approval
        people rejected, or let expire unanswered, is not asked again for the incident and action at all
        (:meth:`RemediationStore.mark_answered`): a new request would restart a canary's promotion hold."""
        for step in self._steps_for(alert.rule, alert.group, incident, deployment):
            if not announced and step.mode != "auto":
                continue
            previous = self.remediation.store.attempts(incident.incident_id, deployment.deployment_id, step.action)
            if previous.get("last_outcome") in (Outcome.SUCCEEDED.value, Outcome.NOOP.value):
                continue
            if step.mode == "approval" and previous.get("answered"):
                continue  # people were asked for this incident and action: they said no, or never answered
            action = self.settings.remediation.actions.get(step.action)
            if step.mode == "auto" and action is not None and int(previous.get("attempts", 0)) >= action.max_attempts:
                continue  # every attempt used (the last failure was reported): not again at each later alert
            result = self.remediation.run(incident, deployment, step, decided_at=decided_at)
            if announced or result.outcome not in (Outcome.REFUSED, Outcome.EXHAUSTED):
                self._enforce_deadline(alert, incident, step, result, decided)

    def _enforce_deadline(
        self, alert: Alert, incident: Incident, step: PlanStep, result: RemediationResult, decided: datetime
    ) -> None:
        """An automatic rollback must be confirmed (done and verified, or already in place) within
        ``remediation.emergency_deadline_seconds`` of the decision: ``decided``, when this run of the
        engine evaluated the rules and so decided this rollback. When it failed, was refused, ran out of
        attempts or took longer, the incident's first escalation routes are paged at once: the new
        version may still take traffic.

        Not from the alert's time, nor its source's: a retry from the outbox (a minute or more after
        the event) raises the alert its first run raised, at that run's time, but the rollback it runs
        is decided now. The first run either never got to its rollback (it failed before: audited as
        ``alerting_failed``, run again), or ran it: a confirmed one is not run again, and one that was
        not confirmed was reported missed by that run already."""
        action = self.settings.remediation.actions.get(step.action)
        if step.mode != "auto" or action is None or action.type not in ROLLBACK_TYPES:
            return
        deadline = self.settings.remediation.emergency_deadline_seconds
        elapsed = (clock.now() - decided).total_seconds()
        if result.outcome in (Outcome.SUCCEEDED, Outcome.NOOP) and elapsed <= deadline:
            return
        if result.outcome not in (Outcome.SUCCEEDED, Outcome.NOOP, *UNCONFIRMED):
            return  # busy, cooling down, blocked (the breaker pages), disabled, dry run: no rollback was due now
        routes = self._first_routes(incident)
        why = (
            f"{result.outcome.value}: {result.message}"
            if result.outcome in UNCONFIRMED
            else f"confirmed only after {elapsed:.1f} s"
        )
        text = f"rollback of {result.target} not confirmed within {deadline:g} s of the decision ({why})"
        self.repository.audit(
            alert.deployment_id, "emergency_deadline_missed", ACTOR, text,
            incident_id=incident.incident_id, remediation_action=step.action, outcome=result.outcome.value,
            seconds_since_decision=round(elapsed, 3), routes=routes,
        )  # fmt: skip
        if self.publisher is None:
            return
        event = DeploymentEvent(
            event_type=EventType.ALERT, deployment_id=alert.deployment_id, service=alert.service,
            version=alert.version, environment=alert.environment, severity=Severity.CRITICAL,
            title=f"Rollback not confirmed: {alert.service} {alert.version}", message=text,
            details={"kind": "emergency_deadline_missed", "incident_id": incident.incident_id,
                     "action": step.action, "outcome": result.outcome.value, "routes": routes},
        )  # fmt: skip
        outbox.announce(self.repository, self.publisher, event, actor=ACTOR)

    def _first_routes(self, incident: Incident) -> list[str]:
        """Who is paged at once when a rollback is not done: the incident's first escalation routes (else
        the circuit breaker's)."""
        policy = self.settings.escalation.policies.get(incident.escalation.policy or "")
        return list(policy.steps[0].routes if policy else self.settings.remediation.circuit_breaker.page_routes)

    def _publish(self, alert: Alert, incident: Incident, opened: bool) -> None:
        """Announce the alert through the outbox. The event of an alert of an event or assessment has an
        id derived from the alert's, and the alert's time (its first raise's), so a retry of the engine
        finds it recorded (and published) and announces nothing twice; the first recording stands."""
        if self.publisher is None:
            return
        same = {"event_id": alert_event_id(alert.alert_id)} if alert.derived else {}
        event = DeploymentEvent(
            **same,
            event_type=EventType.ALERT,
            deployment_id=alert.deployment_id,
            service=alert.service,
            version=alert.version,
            environment=alert.environment,
            severity=alert.severity,
            title=alert.title,
            message=alert.message,
            at=alert.at,
            details={
                "kind": "alert",
                "alert_id": alert.alert_id,
                "rule": alert.rule,
                "group": alert.group,
                "incident_id": incident.incident_id,
                "incident_opened": opened,
                "stable_version": alert.stable_version,
                "routes": alert.routes,
                "values": alert.values,
                "baseline": alert.baseline,
            },
        )
        outbox.announce(self.repository, self.publisher, event, actor=ACTOR)


def alert_event_id(alert_id: str) -> str:
    """The id of the ``alert`` event announcing an alert whose id is derived (the same on a retry)."""
    return "ev-" + hashlib.sha256(f"{alert_id}#alert".encode()).hexdigest()[:24]


def _opened_by(alert: Alert, incident: Incident) -> bool:
    """Whether ``alert`` opened ``incident`` (a retry joins the incident its first run opened)."""
    return any(t.action == "opened" and t.details.get("alert_id") == alert.alert_id for t in incident.timeline)
