"""The CodeDeploy lifecycle hook: validate, record, and answer CodeDeploy exactly once.

The event is ``{"DeploymentId", "LifecycleEventHookExecutionId"}``. Everything else is
learned from CodeDeploy (the AppSpec's function, alias, current and target versions;
for ECS the deployment group's service and the lifecycle event in progress) and from
the configuration. For a Lambda deployment, which hook this is follows from the alias:
before traffic moves it routes only to the current version (BeforeAllowTraffic:
pre-traffic checks); after, it routes to the target version (AfterAllowTraffic: the
judge and the health assessment over ``post_traffic_window_seconds``; an alias moved back after
AllowTraffic, as CodeDeploy's target or this deployment's answered BeforeAllowTraffic tells, is still
AfterAllowTraffic, and fails closed: the new version serves nothing). For ECS the event is
the one GetDeploymentTarget shows in progress; when it names none (or no hook), green serving
production traffic means AfterAllowTraffic, and otherwise the hook fails closed
(:meth:`LifecycleHook._phase`); when it names a hook this deployment already answered under another
execution id (a stale read: CodeDeploy runs each hook once) it is read again, and still stale, green's
share of its production listener or only AfterAllowTraffic left makes it AfterAllowTraffic (only a
healthy verdict passes it), else it fails closed. An ECS AfterAllowTraffic judges from CodeDeploy's
AllowTraffic start (GetDeploymentTarget), else the assessor's ``traffic_started_at``, else no period:
green's test-listener traffic is never production evidence. After traffic moved, missing evidence of a
guarded metric fails the hook whatever ``fail_post_traffic_on_inconclusive`` says (that setting is about too little
traffic).

Exactly once (:mod:`deployguard.hooks.answers`): a marker keyed on the hook execution id is
claimed before any work, with a lease until this attempt's deadline; the status decided is
stored on it before the PutLifecycleEventHookExecutionStatus call, and the marker is done once
CodeDeploy confirmed it. A second delivery of the same execution (Lambda's async retries,
duplicates) runs no checks: it finds the marker done (nothing to do), a decided status not
confirmed (sends the same status again), or a claim whose lease ended undecided (the first
attempt died: it answers ``Failed`` for it). The recorder's schedule does the same for
executions nobody delivers again. A claim written but answered with an error (a 500) is
recognised as this attempt's own by its token. Fail closed: any error inside is answered
``Failed``, with the reason recorded; :meth:`LifecycleHook.handle` never raises, even with
DynamoDB down. Checks get a deadline that leaves ``report_margin_seconds`` before the
function's own timeout, and the status call is retried within that margin.

Recorded once CodeDeploy has its answer: the verdict (audited), its warning (``validation.warned``)
and, for ``Failed``, the record's phase and ``validation.failed`` with its alert. Events go through
the outbox (recorded, published, marked published): a notification outage never changes the answer,
and the minute tick publishes what could not be. Every ``Failed`` is kept pending from before it is
sent to CodeDeploy until all of it is written, whoever sends it (the hook's own decision, the
``Failed`` for an attempt that died, sent by a redelivery or by the recorder's sweep, a ``Failed`` an
attempt decided and sent again by either, the answer after a failed claim or to a malformed event):
a kill after the answer, or between the decision and its keeping, loses nothing. It is recorded
only once CodeDeploy has it (accepted, or no longer waiting), inline or by the recorder's schedule
(:meth:`LifecycleHook.finish_verdicts`, from the hook's answer marker); one CodeDeploy refused is
given up (audited ``hook_verdict_refused``), not recorded, on every path.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from deployguard import clock
from deployguard.aws.codedeploy import (
    ECS_HOOKS,
    CodeDeployDeployment,
    CodeDeployGateway,
    HookStatus,
    ReportOutcome,
    StatusReport,
)
from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.exceptions import CodeDeployError, InvalidEventError
from deployguard.hooks.answers import (
    DEAD_ATTEMPT_REASON,
    DEFAULT_BUDGET_SECONDS,
    HOOK_KIND,
    RESENT_FAILED_REASON,
    HookAnswers,
    Settled,
)
from deployguard.hooks.checks import CheckContext, CheckResult, Sleep, run_check
from deployguard.inbound import parse_event
from deployguard.models import (
    Decision,
    Deployment,
    DeploymentEvent,
    EcsTarget,
    EventType,
    HealthStatus,
    LambdaTarget,
    MetricKind,
    MetricSpec,
    Model,
    Phase,
    PhaseChange,
    Severity,
    judged_from,
)
from deployguard.storage import outbox
from deployguard.storage.leases import DONE
from deployguard.workflows.recorder import ensure_record

if TYPE_CHECKING:
    from deployguard.alerts.engine import AlertEngine
    from deployguard.analysis.settings import JudgeSettings
    from deployguard.aws.events import EventPublisher
    from deployguard.config import DeployGuardConfig
    from deployguard.models import CanaryWindow, Verdict
    from deployguard.storage.leases import Marker
    from deployguard.storage.repository import DeploymentRepository

ACTOR = "deployguard:lifecycle-hook"
REPORT_SAFETY_SECONDS = 0.5  # the status call never starts a try this close to the function's end
VERDICT_RETRY = timedelta(hours=24)  # a Failed verdict whose recording keeps failing is given up after this
FINISH_RESERVE_SECONDS = 10.0  # finish_verdicts starts no verdict with less of the invocation left
EVENT_REREAD_PAUSES = (1.0, 2.0)  # ECS: GetDeploymentTarget read again after these when it names no hook
LOOKBACK_RESERVE_SECONDS = 30.0  # the look back's GetMetricData (retried) is not started closer to the deadline
SILENT_MIN_EXPECTED = 5.0  # requests expected on the new version before none of them is missing evidence (P 0.7%)
ANSWERED = ("accepted", "already_completed")  # the answer marker's outcomes that mean CodeDeploy has a status
__all__ = ["HOOK_KIND", "HookEvent", "HookOutcome", "LifecycleHook", "answer_without_setup"]
logger = logging.getLogger(__name__)

_EXECUTION_ID = r"^\S{1,1024}$"
_DEPLOYMENT_ID = r"^[A-Za-z0-9-]{1,64}$"


class HookEvent(Model):
    """What CodeDeploy sends a lifecycle hook function."""

    DeploymentId: str = Field(pattern=_DEPLOYMENT_ID)
    LifecycleEventHookExecutionId: str = Field(pattern=_EXECUTION_ID)


HookPhase = Literal["pre_traffic", "post_traffic", "no_checks", "unknown"]
Validated = tuple[HookStatus, str, list[CheckResult], str | None]  # status, reason, checks, warning


class HookOutcome(Model):
    """What the hook did: the ``can_deploy``-style report returned, logged and audited."""

    execution_id: str | None
    deployment_id: str | None
    status: HookStatus | None
    reason: str
    phase: HookPhase | None = None
    lifecycle_event: str | None = None
    duplicate: bool = False
    reported: bool = False
    report_error: str | None = None
    report_attempts: int = 0
    answer: ReportOutcome | None = None  # how CodeDeploy took the status (unconfirmed: to be sent again)
    resent: bool = False  # the status an earlier attempt decided, sent again
    checks: list[CheckResult] = Field(default_factory=list)
    warning: str | None = None  # announced (validation.warned) once CodeDeploy has its answer

    def as_dict(self) -> dict[str, Any]:
        return {
            "deployment_id": self.deployment_id,
            "execution_id": self.execution_id,
            "phase": self.phase,
            "lifecycle_event": self.lifecycle_event,
            "status": self.status,
            "reason": self.reason,
            "duplicate": self.duplicate,
            "reported": self.reported,
            "report_error": self.report_error,
            "report_attempts": self.report_attempts,
            "answer": self.answer,
            "resent": self.resent,
            "can_deploy": self.status == "Succeeded",
            "passed": [c.name for c in self.checks if c.status == "passed"],
            "failed": [c.name for c in self.checks if c.status == "failed"],
            "warnings": [c.name for c in self.checks if c.status == "warned"],
            "warning": self.warning,
            "checks": [c.report() for c in self.checks],
        }

    @property
    def metric_name(self) -> str:
        if self.duplicate:
            return "HookDuplicate"
        if self.answer == "unconfirmed":  # decided, not yet taken by CodeDeploy: the sweep sends it again
            return "HookAnswerUnconfirmed"
        return f"Hook{self.status or 'Unanswered'}"


class LifecycleHook:
    def __init__(
        self,
        config: DeployGuardConfig,
        repository: DeploymentRepository,
        publisher: EventPublisher,
        codedeploy: CodeDeployGateway | None = None,
        *,
        local_mode: bool = False,
        sleep: Sleep = clock.sleep,
        alert_engine: Callable[[], AlertEngine] | None = None,
    ) -> None:
        self.config = config
        self.repository = repository
        self.publisher = publisher
        self.codedeploy = codedeploy or CodeDeployGateway()
        self.local_mode = local_mode
        self.sleep = sleep
        self.answers = HookAnswers(repository, self.codedeploy, sleep=sleep)
        # validation failures and warnings raise alerts (canary-issue: incident, paging); the engine is
        # asked for only then, so a hook that passes never builds it (nor imports it: cold start)
        self.alert_engine = alert_engine

    # ------------------------------------------------------------------ entry

    def handle(self, raw: Any, remaining_ms: Callable[[], int]) -> HookOutcome:
        """Validate the deployment of one hook execution and answer CodeDeploy, once; never raises."""
        try:
            return self._handle(raw, remaining_ms)
        except Exception as exc:  # a bug or an outage nothing inside caught: still answer, Failed
            logger.exception("lifecycle hook failed outside its checks")
            return answer_without_setup(raw, f"internal error, failing closed: {type(exc).__name__}: {exc}",
                                        self.codedeploy, sleep=self.sleep)  # fmt: skip

    def _handle(self, raw: Any, remaining_ms: Callable[[], int]) -> HookOutcome:
        try:
            event = parse_event(HookEvent, raw, "malformed lifecycle hook event")
        except InvalidEventError as exc:
            return self._malformed(raw, str(exc))
        execution_id, deployment_id = event.LifecycleEventHookExecutionId, event.DeploymentId
        must_answer_by = clock.now() + timedelta(milliseconds=remaining_ms())
        outcome = HookOutcome(execution_id=execution_id, deployment_id=deployment_id, status="Failed", reason="")
        try:
            claim = self.answers.markers.claim(
                execution_id, must_answer_by.timestamp(), reclaim_expired=False, deployment_id=deployment_id
            )
        except Exception as exc:  # cannot even record the claim: answer Failed rather than leave CodeDeploy waiting
            logger.exception("cannot claim the hook execution", extra={"deployment_id": deployment_id})
            outcome.reason = (
                f"internal error, failing closed: cannot claim the hook execution: {type(exc).__name__}: {exc}"
            )
            # kept before the answer (if the table takes it now): no answer marker here, so the recorder's
            # schedule learns CodeDeploy's answer by sending the same Failed again
            at = clock.now()
            pending = self._keep_pending(outcome, at, unclaimed=True)
            self._send(outcome, must_answer_by, DEFAULT_BUDGET_SECONDS)
            self._record_verdict(outcome, at, pending)
            return outcome
        if not claim.mine:
            return self._existing(claim.existing, deployment_id, execution_id, must_answer_by)
        deadline = time.monotonic() + remaining_ms() / 1000.0
        margin = DEFAULT_BUDGET_SECONDS
        try:
            margin = self._validate(outcome, deadline)
        except Exception as exc:  # fail closed: whatever went wrong inside, the answer is Failed with the reason
            logger.exception("lifecycle hook failed inside", extra={"deployment_id": deployment_id})
            outcome.status, outcome.reason = "Failed", f"internal error, failing closed: {type(exc).__name__}: {exc}"
        assert outcome.status is not None
        try:
            decided = self.answers.markers.decide(execution_id, claim.token, outcome.status)
        except Exception:  # the marker cannot take the decision: answer anyway (CodeDeploy takes one result)
            logger.exception("cannot store the hook's decision", extra={"execution_id": execution_id})
            decided = True
        if not decided:  # our lease ran out and another attempt answered for this one
            outcome.duplicate = True
            outcome.reason = "another attempt answered this execution (this one outlived its lease): " + outcome.reason
            return outcome
        # a Failed verdict is kept pending before CodeDeploy is answered: killed after the answer (the
        # status call may use the time up to the function's end), the recorder's schedule still records it
        at = clock.now()
        pending = outcome.status == "Failed" and self._keep_pending(outcome, at)
        self._send(outcome, must_answer_by, margin)
        self._record_verdict(outcome, at, pending)
        return outcome

    # ------------------------------------------------------------------ learning and validating

    def _validate(self, outcome: HookOutcome, deadline: float) -> float:
        """Learn, check and decide; returns the service's ``report_margin_seconds``."""
        assert outcome.deployment_id is not None
        info = self.codedeploy.deployment(outcome.deployment_id)
        if info.target is None:
            raise CodeDeployError(f"deployment {info.deployment_id}: no Lambda or ECS target in its AppSpec")
        deployment = ensure_record(
            self.repository, self.config, info, clock.now(), "first lifecycle hook", self.codedeploy
        )
        settings = self.config.service(deployment.service).hooks
        check_deadline = deadline - settings.report_margin_seconds
        answered: tuple[str, ...] = ()
        if isinstance(info.target, EcsTarget):
            answered = self._answered_ecs_hooks(info, outcome.execution_id)
            if _event_unknown(info) or _stale_read(info, answered):
                info = self._read_event_again(info, check_deadline, answered)
        outcome.phase, outcome.lifecycle_event, weight, inferred = self._phase(
            info, settings.ecs_check_hooks, outcome.execution_id, answered
        )
        # a stale read CodeDeploy never corrected: which hook this is stays in doubt (only evidence passes it)
        in_doubt = _stale_read(info, answered)
        deployment = self._enter_phase(deployment, outcome, weight, info)
        if outcome.phase == "unknown":  # which hook this is cannot be told: never a blind Succeeded
            outcome.status, outcome.reason = "Failed", f"lifecycle event unknown, failing closed: {inferred}"
            return settings.report_margin_seconds
        if isinstance(info.target, LambdaTarget) and outcome.phase == "post_traffic" and not weight:
            # AfterAllowTraffic while the alias routes nothing to the new version: it was moved back outside
            # this deployment; a Succeeded would have CodeDeploy report a release that serves no traffic
            outcome.status, outcome.reason = (
                "Failed",
                (
                    f"AfterAllowTraffic, but {info.target.function_name}:{info.target.alias} routes no traffic to "
                    f"version {info.target.new_version} (moved back outside this deployment): nothing to judge, "
                    f"failing closed; lifecycle event inferred: {inferred}"
                ),
            )
            return settings.report_margin_seconds
        if outcome.phase == "pre_traffic":
            outcome.status, outcome.reason, outcome.checks, outcome.warning = self._pre_traffic(
                deployment, check_deadline
            )
        elif outcome.phase == "post_traffic":
            outcome.status, outcome.reason, outcome.checks, outcome.warning = self._post_traffic(
                deployment, check_deadline, in_doubt=in_doubt
            )
        else:
            outcome.status, outcome.reason = "Succeeded", f"{outcome.lifecycle_event}: no checks configured"
        if inferred:
            outcome.reason = f"{outcome.reason}; lifecycle event inferred: {inferred}"
        return settings.report_margin_seconds

    def _read_event_again(
        self, info: CodeDeployDeployment, deadline: float, answered: Sequence[str] = ()
    ) -> CodeDeployDeployment:
        """GetDeploymentTarget read again (its lifecycle events are eventually consistent) while it names
        no hook in progress and green has no production traffic, or names a hook this deployment answered
        already (``answered``: a stale read, :func:`_stale_read`), a few times within the checks' budget."""
        assert isinstance(info.target, EcsTarget)
        target_id = f"{info.target.cluster}:{info.target.service}"  # as CodeDeploy names an ECS target
        for pause in EVENT_REREAD_PAUSES:
            if time.monotonic() + pause >= deadline:
                break
            self.sleep(pause)
            try:
                state = self.codedeploy.deployment_target(info.deployment_id, target_id)
            except CodeDeployError:
                logger.warning("cannot read the deployment target again", extra={"deployment_id": info.deployment_id})
                continue
            if state is None:
                continue
            weight = state.new_version_weight()
            moved = info.production_traffic_moved or _traffic_moved(state.lifecycle_events)
            info = info.model_copy(update={
                "lifecycle_event": state.running_event, "production_traffic_moved": moved,
                "new_traffic_weight": info.new_traffic_weight if weight is None else weight,
                "traffic_started_at": info.traffic_started_at or state.traffic_started_at,
            })  # fmt: skip
            if not _event_unknown(info) and not _stale_read(info, answered):
                break
        return info

    def _answered_ecs_hooks(self, info: CodeDeployDeployment, execution_id: str | None) -> tuple[str, ...]:
        """The ECS hooks of this deployment answered under another hook execution id (the audit trail's
        verdicts), when GetDeploymentTarget shows a hook before AfterAllowTraffic in progress, or none, and
        green has no production traffic (else the read cannot be mistaken for a later hook). CodeDeploy runs
        each hook once: the one in progress is none of them. Unreadable: none (the read decides)."""
        if not (_before_traffic_hook(info) or _event_unknown(info)):
            return ()
        try:
            return tuple(
                dict.fromkeys(
                    str(e.details["lifecycle_event"])
                    for e in self.repository.audit_trail(info.deployment_id)
                    if e.action == "hook_verdict"
                    and e.details.get("lifecycle_event") in ECS_HOOKS
                    and e.details.get("execution_id") not in (None, execution_id)
                )
            )
        except Exception:  # a second opinion: unreadable, CodeDeploy's word stands
            logger.warning("cannot read the hook verdicts", extra={"deployment_id": info.deployment_id})
            return ()

    def _phase(
        self,
        info: CodeDeployDeployment,
        ecs_check_hooks: Sequence[str],
        execution_id: str | None = None,
        answered: Sequence[str] = (),
    ) -> tuple[HookPhase, str | None, float | None, str | None]:
        """Which validation this hook execution is, the lifecycle event, the new version's traffic share,
        and how the event was inferred when CodeDeploy did not name it (for ``unknown``: why not).

        CodeDeploy's invocation names no lifecycle event (only the deployment and the execution): for ECS
        it is the event GetDeploymentTarget shows in progress. Whenever the new version serves production
        traffic the judge decides, whatever event a stale read shows; an event not known (none in progress,
        or one that is no hook) before any production traffic moved fails closed (``unknown``). A hook this
        deployment already answered under another execution id (``answered``) is a stale read, never run
        again: :meth:`_after_stale_read` tells the later hook, or fails closed."""
        target = info.target
        if isinstance(target, LambdaTarget):
            alias = LambdaTrafficShifter(target).current()
            new_weight = alias.weight_of(target.new_version)
            if new_weight >= 1.0:
                return "post_traffic", "AfterAllowTraffic", new_weight, None
            if new_weight > 0.0:  # never at BeforeAllowTraffic (the alias routes only to the current version)
                why = f"the alias routes {new_weight:.0%} of its traffic to version {target.new_version}"
                return "post_traffic", "AfterAllowTraffic", new_weight, why
            after = self._traffic_was_allowed(info, target, execution_id)
            if after:  # the alias was moved back after AllowTraffic: still AfterAllowTraffic, never the pre checks
                return "post_traffic", "AfterAllowTraffic", new_weight, after
            return "pre_traffic", "BeforeAllowTraffic", new_weight, None
        event, green_weight = info.lifecycle_event, info.new_traffic_weight
        if event == "AfterAllowTraffic":
            return "post_traffic", event, green_weight, None
        named = f"CodeDeploy shows {event} in progress" if event else "CodeDeploy names no lifecycle event in progress"
        if green_weight:  # green serves production: only AfterAllowTraffic runs now, whatever a stale read says
            why = f"{named}, but green has {green_weight:.0%} of production traffic"
            return "post_traffic", "AfterAllowTraffic", green_weight, why
        if _stale_read(info, answered):
            return self._after_stale_read(info, answered)
        if event in ECS_HOOKS:
            if event not in ecs_check_hooks:
                return "no_checks", event, green_weight, None
            return "pre_traffic", event, green_weight, None
        if info.production_traffic_moved:  # AllowTraffic began: the only hook after it is AfterAllowTraffic
            why = f"{named}, and its AllowTraffic event began (production traffic moved to green)"
            return "post_traffic", "AfterAllowTraffic", green_weight, why
        why = (f"{named} (read {1 + len(EVENT_REREAD_PAUSES)} times) and green has no production traffic: "
               "cannot tell which hook this is")  # fmt: skip
        return "unknown", event, green_weight, why

    def _after_stale_read(
        self, info: CodeDeployDeployment, answered: Sequence[str]
    ) -> tuple[HookPhase, str | None, float | None, str | None]:
        """ECS, GetDeploymentTarget still showing a hook this deployment answered already (read again
        :data:`EVENT_REREAD_PAUSES`): this execution is a later hook. Green serving production traffic (its
        production listener, as CodeDeploy sets it) or only AfterAllowTraffic left means AfterAllowTraffic
        (the judge; the hook is in doubt, so an inconclusive verdict fails it); otherwise ``unknown``."""
        assert isinstance(info.target, EcsTarget)
        last = max(answered, key=ECS_HOOKS.index)
        later = ECS_HOOKS[ECS_HOOKS.index(last) + 1 :]
        named = (
            f"CodeDeploy still shows {info.lifecycle_event} in progress (read {1 + len(EVENT_REREAD_PAUSES)} "
            f"times), but this deployment answered its {last} under another hook execution: a stale read"
        )
        weight, seen = self._listener_weight(info, info.target)
        if weight:
            return "post_traffic", "AfterAllowTraffic", weight, f"{named}; {seen}"
        if later == ("AfterAllowTraffic",):
            return "post_traffic", "AfterAllowTraffic", weight, f"{named}; only AfterAllowTraffic follows it ({seen})"
        return (
            "unknown",
            info.lifecycle_event,
            weight,
            f"{named}, and {seen}: cannot tell which of {', '.join(later)} this is",
        )

    def _listener_weight(self, info: CodeDeployDeployment, target: EcsTarget) -> tuple[float | None, str]:
        """Green's share of production traffic as its production listener forwards it (the deployment
        group's ``prodTrafficRoute``, DescribeListeners), and how that was seen; None when unreadable."""
        from deployguard.aws.elbv2 import forwarded_share  # ECS deployments only
        from deployguard.exceptions import LoadBalancerError

        try:
            group = self.codedeploy.deployment_group(info.application, info.group)
            pairs = (group.get("loadBalancerInfo") or {}).get("targetGroupPairInfoList") or []
            listeners = [a for p in pairs for a in (p.get("prodTrafficRoute") or {}).get("listenerArns") or []]
            share = forwarded_share(listeners, target.new_target_group)
        except (CodeDeployError, LoadBalancerError) as exc:
            return None, f"green's production listener could not be read ({exc})"
        if share is None:
            return None, "green's production listener is not known"
        return share, f"its production listener forwards {share:.0%} to green"

    def _traffic_was_allowed(
        self, info: CodeDeployDeployment, target: LambdaTarget, execution_id: str | None
    ) -> str | None:
        """Why a Lambda hook whose alias routes nothing to the new version is AfterAllowTraffic all the same
        (someone moved the alias back after AllowTraffic), or None: CodeDeploy's target shows AllowTraffic
        done or AfterAllowTraffic in progress, or this deployment's BeforeAllowTraffic was already answered
        under another hook execution (CodeDeploy runs each hook once). Unreadable: the alias decides."""
        try:
            state = self.codedeploy.deployment_target(info.deployment_id, f"{target.function_name}:{target.alias}")
        except CodeDeployError:
            state = None
        if state is not None:
            events = dict(state.lifecycle_events)
            if events.get("AfterAllowTraffic") == "InProgress" or events.get("AllowTraffic") == "Succeeded":
                return "CodeDeploy shows AllowTraffic done, but the alias routes nothing to the new version"
        try:
            answered = [
                e.details.get("execution_id")
                for e in self.repository.audit_trail(info.deployment_id)
                if e.action == "hook_verdict" and e.details.get("phase") == "pre_traffic"
            ]
        except Exception:  # the trail is a second opinion: unreadable, CodeDeploy's and the alias's words stand
            logger.warning("cannot read the hook verdicts", extra={"deployment_id": info.deployment_id})
            return None
        if any(e and e != execution_id for e in answered):
            return "its BeforeAllowTraffic was answered already, but the alias routes nothing to the new version"
        return None

    def _enter_phase(
        self, deployment: Deployment, outcome: HookOutcome, weight: float | None, info: CodeDeployDeployment
    ) -> Deployment:
        reason = f"{outcome.lifecycle_event or 'lifecycle hook'}: {outcome.phase} validation"

        def change(d: Deployment) -> None:
            if d.status.is_terminal:
                return
            if isinstance(info.target, EcsTarget) and isinstance(d.target, EcsTarget):
                # task sets and target groups appear as CodeDeploy creates them: keep what is known
                learned = {k: v for k, v in info.target.model_dump().items() if v}
                d.target = d.target.model_copy(update=learned)
            if weight is not None and weight != d.canary_weight:
                d.canary_weight = weight
                d.weight_changed_at = clock.now()
            if info.traffic_started_at is not None and d.target.kind == "ecs":  # CodeDeploy's AllowTraffic start
                d.traffic_started_at = info.traffic_started_at
            d.phase = Phase.VALIDATION
            d.phase_history.append(PhaseChange(phase=Phase.VALIDATION, at=clock.now(), reason=reason))

        return self.repository.update_deployment(deployment.deployment_id, change)

    def _pre_traffic(self, deployment: Deployment, deadline: float) -> Validated:
        service = self.config.service(deployment.service)
        ctx = CheckContext(deployment, service.judge.metrics, self.local_mode)
        lambda_target = isinstance(deployment.target, LambdaTarget)
        # smoke-testing a Lambda version applies to Lambda targets only
        checks = [c for c in service.hooks.pre_traffic if lambda_target or c.type != "lambda_invoke"]
        results = [run_check(check, ctx, deadline, self.sleep) for check in checks]
        for result in results:
            if result.status == "passed" and "baseline" in result.details:
                self.repository.audit(deployment.deployment_id, "baseline_captured", ACTOR, result.message,
                                      **result.details)  # fmt: skip
        return _summarise("pre-traffic", results)

    def _post_traffic(self, deployment: Deployment, deadline: float, *, in_doubt: bool = False) -> Validated:
        # the judge, the metrics reader and the assessment: only after traffic moved (a pre-traffic
        # hook's cold start never loads them)
        from deployguard.analysis.judge import judge_canary, live_view
        from deployguard.aws.cloudwatch import MetricsReader
        from deployguard.workflows.assessment import assessment_from_verdict

        service = self.config.service(deployment.service)
        # alarms still apply after traffic moved
        alarm_checks = [c for c in service.hooks.pre_traffic if c.type == "alarms"]
        ctx = CheckContext(deployment, service.judge.metrics, self.local_mode)
        results = [run_check(check, ctx, deadline, self.sleep) for check in alarm_checks]
        # the judge compares the versions: Lambda versions by ExecutedVersion, ECS task sets by target group
        now = clock.now()
        since = judged_from(deployment).started_at  # ECS: from when production reached green
        # ECS, that time unknown (neither CodeDeploy's AllowTraffic event nor the assessor tells): green's
        # test-listener traffic is no evidence, so no period counts (inconclusive)
        start_unknown = isinstance(deployment.target, EcsTarget) and deployment.traffic_started_at is None
        if start_unknown:
            since = now
        window_start = max(since, now - timedelta(seconds=service.hooks.post_traffic_window_seconds))
        windowed = deployment.model_copy(update={"started_at": window_start})
        window = MetricsReader().canary_windows(
            [(windowed, service.judge.read_metrics)], now, service.canary.assessment_interval_seconds
        )[deployment.deployment_id]
        window = live_view(window)  # the newest minute's datapoints may still be arriving
        # one look at the window: the false-alarm budget is spread over its periods
        judge_settings = service.judge.for_run(window.periods)
        verdict = judge_canary(window, judge_settings)
        assessment = assessment_from_verdict(deployment, window, verdict, service.health)
        self.repository.add_assessment(assessment)
        health = assessment.health_status
        failing = verdict.decision == Decision.FAILING or health == HealthStatus.CRITICAL
        inconclusive = service.hooks.fail_post_traffic_on_inconclusive and verdict.decision == Decision.INCONCLUSIVE
        status, summary, results, warning = _summarise("post-traffic", results)
        judged = f"judge {verdict.decision.value}: {verdict.summary} (health {health.value})"
        # missing evidence of a guarded metric (CloudWatch errors, gaps) never lets a release through,
        # whatever fail_post_traffic_on_inconclusive says: that setting is about too little traffic
        missing = None if failing else _missing_evidence(window, judge_settings, verdict)
        if start_unknown:
            judged += (
                "; when production traffic reached green is unknown (CodeDeploy's AllowTraffic event names no "
                "start): its test-listener traffic is no evidence, no period counted"
            )
        if not failing and not missing and verdict.decision == Decision.INCONCLUSIVE and not start_unknown:
            missing = self._silent_new_version(
                deployment, window, window_start, service.hooks.post_traffic_window_seconds, deadline
            )
        if missing:
            judged = f"judge {verdict.decision.value} (health {health.value})"  # its summary: what is missing
            return "Failed", f"{summary}; missing evidence, failing closed: {missing}; {judged}", results, warning
        if failing or inconclusive:
            return "Failed", f"{summary}; {judged}", results, warning
        if in_doubt and verdict.decision != Decision.HEALTHY:  # which hook this is was inferred: evidence or Failed
            return (
                "Failed",
                f"{summary}; {judged}; the hook was inferred from a stale read: failing closed",
                results,
                warning,
            )
        if verdict.decision == Decision.INCONCLUSIVE:  # passes without evidence: say so, loudly
            no_evidence = (
                "post-traffic judge had no evidence (too little traffic) and let the deployment pass: "
                f"{verdict.summary} (set hooks.fail_post_traffic_on_inconclusive to fail instead)"
            )
            warning = f"{warning}; {no_evidence}" if warning else no_evidence
        return status, f"{summary}; {judged}", results, warning

    def _silent_new_version(
        self,
        deployment: Deployment,
        window: CanaryWindow,
        window_start: datetime,
        lookback_seconds: int,
        deadline: float = math.inf,
    ) -> str | None:
        """At AfterAllowTraffic the new version serves production (its weight above 0) but its count (ECS:
        ``RequestCount`` of green's target group, Lambda: ``Invocations`` of the new version) shows no request
        in the window: missing evidence when the stable version had traffic, in the window or in as long
        before it. For ECS no request on either target group is missing evidence too (the load balancer
        publishes nothing to tell green serves production); a Lambda function without traffic on either
        version stays "too little traffic" (``hooks.fail_post_traffic_on_inconclusive``). None otherwise."""
        weight = deployment.canary_weight or 0.0
        count = next((m for m in window.metrics if m.spec.kind == MetricKind.COUNT), None)
        if weight <= 0.0 or count is None or any(g.version == "canary" for g in count.gaps):
            return None  # no weight, no count, or a count CloudWatch did not return (_missing_evidence's)
        target = deployment.target
        ecs = isinstance(target, EcsTarget)
        periods = len(count.canary)
        # only the periods since the new version got its weight count: before the shift it had none (an
        # all-at-once deployment's window is all before it). ECS: the window starts when production reached green.
        after = periods if ecs and deployment.traffic_started_at is not None else window.periods_since_shift
        after = min(periods, after or 0)
        if after <= 0 and not (ecs and not sum(v for v in count.canary + count.baseline if v)):
            return None  # no complete period since the shift: nothing expected yet (a zero-length window)
        after = after or periods  # ECS, neither target group with a request in the window: the look back tells
        if sum(v for v in count.canary[periods - after :] if v):
            return None
        if isinstance(target, EcsTarget):
            new = f"green ({target.new_target_group or 'its target group'})"
            old = f"blue ({target.stable_target_group or 'its target group'})"
        else:
            new, old = f"version {target.new_version}", f"version {target.stable_version}"
        metric = f"{count.spec.namespace}/{count.spec.name}"
        served = (f"{count.spec.id}: missing evidence: {new} has {weight:.0%} of production traffic but no "
                  f"{metric} in the {after} periods since it got it")  # fmt: skip
        stable_after = sum(v for v in count.baseline[periods - after :] if v)
        stable_before = sum(v for v in count.baseline[: periods - after] if v)
        in_window = stable_after + stable_before
        before, unread = 0.0, None
        if not in_window and time.monotonic() + LOOKBACK_RESERVE_SECONDS >= deadline:
            unread = "no time left in the hook to read it"  # the status call must go out: fail closed instead
        elif not in_window:
            before, unread = self._baseline_before(deployment, count.spec, window_start, lookback_seconds)
        if in_window or before:
            # all the traffic per period: the stable version's since the shift scaled up by its share, else its rate
            # before the shift (or before the window), when it had all of it (a low estimate: conservative); the
            # new version's share of it since the shift; too few expected to miss: too little traffic
            if stable_after and weight < 1.0:
                rate = stable_after / (1.0 - weight) / after
            elif stable_before:
                rate = stable_before / (periods - after)
            else:
                rate = before / max(1, lookback_seconds // window.interval_seconds)
            expected = rate * weight * after
            if expected < SILENT_MIN_EXPECTED:
                return None
            had = (
                f"{in_window:g} in the window"
                if in_window
                else f"{before:g} in the {lookback_seconds // 60} min before it"
            )
            return f"{served} (about {expected:.0f} expected), while {old} had {had}"
        if unread:
            return f"{served}, and {old}'s {metric} before the window could not be read ({unread})"
        if ecs:
            return (f"{served}, nor {old} in it or in the {lookback_seconds // 60} min before: the load "
                    f"balancer published no {metric} for either target group, so nothing shows green serves "
                    "production")  # fmt: skip
        return None  # a Lambda function with no traffic on either version: too little traffic, as documented

    def _baseline_before(
        self, deployment: Deployment, spec: MetricSpec, window_start: datetime, lookback_seconds: int
    ) -> tuple[float, str | None]:
        """The stable version's total of ``spec`` in the ``lookback_seconds`` before ``window_start``, and why
        CloudWatch did not return it (None when it did)."""
        from deployguard.aws.cloudwatch import MetricsReader

        service = self.config.service(deployment.service)
        earlier = deployment.model_copy(update={"started_at": window_start - timedelta(seconds=lookback_seconds)})
        before = MetricsReader().canary_windows([(earlier, [spec])], window_start,
                                                service.canary.assessment_interval_seconds)  # fmt: skip
        metric = before[deployment.deployment_id].metrics[0]
        gaps = [g.reason for g in metric.gaps if g.version == "baseline"]
        return sum(v for v in metric.baseline if v), "; ".join(gaps) or None

    # ------------------------------------------------------------------ duplicates and malformed events

    def _existing(
        self, marker: Marker | None, deployment_id: str, execution_id: str, must_answer_by: datetime
    ) -> HookOutcome:
        """A second delivery: no checks run again; an answer left unconfirmed is finished."""
        logger.info("duplicate hook delivery", extra={"execution_id": execution_id})
        duplicate = HookOutcome(execution_id=execution_id, deployment_id=deployment_id, status=None,
                                reason="duplicate delivery of a hook execution already handled",
                                duplicate=True)  # fmt: skip
        if marker is None:  # the claim vanished between the write and the read (TTL): nothing to finish
            return duplicate
        settled: Settled = self.answers.settle(marker, self._budget(must_answer_by, DEFAULT_BUDGET_SECONDS))
        if settled.action in ("answered", "in_progress") or settled.report is None:
            return duplicate
        outcome = HookOutcome(execution_id=execution_id, deployment_id=deployment_id, status=settled.status,
                              reason="", resent=settled.action == "resent")  # fmt: skip
        _apply(outcome, settled.report)
        if settled.action == "resent":
            outcome.reason = f"re-sent the status {settled.status} an earlier attempt decided but could not confirm"
            self._audit_quietly(outcome, "hook_resent")  # as the recorder's sweep audits it
            if settled.status == "Failed":  # kept by settle before it was sent again (or by the attempt itself)
                self._finish_resent(outcome)
            return outcome
        outcome.reason = DEAD_ATTEMPT_REASON  # kept pending by settle before it sent the Failed
        self._record_verdict(outcome, pending=True)
        return outcome

    def _finish_resent(self, outcome: HookOutcome) -> None:
        """Record a ``Failed`` an earlier attempt decided, just sent again: the verdict kept for it (by that
        attempt, with its checks, or by :meth:`HookAnswers.settle` before it sent it again) once CodeDeploy has
        it; waits (for :meth:`finish_verdicts`) while unconfirmed. One that could not be kept is recorded now
        unless CodeDeploy refused it (now or never). Never raises."""
        assert outcome.execution_id is not None
        try:
            if self._finish_kept(outcome.execution_id, None, outcome.answer) is not None:
                return
        except Exception:
            logger.exception("cannot record the hook verdict", extra={**outcome.as_dict(), "pending": True})
            return
        self._record_verdict(outcome.model_copy(update={"reason": RESENT_FAILED_REASON}))

    def _malformed(self, raw: Any, reason: str) -> HookOutcome:
        logger.error(reason)
        deployment_id, execution_id = _ids_of(raw)
        if execution_id is None:
            return _unanswerable(deployment_id, reason)
        # no claim: an event that names no valid deployment cannot be tied to a record; CodeDeploy
        # takes one result per execution, which keeps a redelivery from changing the answer
        outcome = HookOutcome(execution_id=execution_id, deployment_id=deployment_id, status="Failed", reason=reason)
        at = clock.now()
        pending = deployment_id is not None and self._keep_pending(outcome, at, unclaimed=True)
        _apply(outcome, self.codedeploy.report(deployment_id, execution_id, "Failed", sleep=self.sleep))
        self._record_verdict(outcome, at, pending)
        return outcome

    # ------------------------------------------------------------------ answering

    @staticmethod
    def _budget(must_answer_by: datetime, margin: float) -> float:
        """Seconds the status call may take: the margin, and never past the function's end."""
        left = (must_answer_by - clock.now()).total_seconds() - REPORT_SAFETY_SECONDS
        return max(0.0, min(margin, left))

    def _send(self, outcome: HookOutcome, must_answer_by: datetime, margin: float) -> None:
        assert outcome.execution_id is not None and outcome.status is not None
        report = self.answers.send(
            outcome.deployment_id, outcome.execution_id, outcome.status, self._budget(must_answer_by, margin)
        )
        _apply(outcome, report)
        if report.error:
            logger.error("CodeDeploy did not take the hook status", extra={"error": report.error,
                                                                            "outcome": report.outcome})  # fmt: skip

    def _record_verdict(self, outcome: HookOutcome, at: datetime | None = None, pending: bool = False) -> None:
        """Record the verdict CodeDeploy was answered with; never raises (CodeDeploy has its answer).

        Audited, its warning announced; a Failed one also fails the record and is announced
        (``validation.failed`` and its alert), once CodeDeploy has it. Every ``Failed`` is kept pending
        before it is sent (``pending``: a marker, :attr:`HookAnswers.verdicts`, kept at ``at``): it is
        recorded here if CodeDeploy took it (the answer's outcome), left pending while the answer is
        unconfirmed, and given up if CodeDeploy refused it (:meth:`_finish_kept`, as
        :meth:`finish_verdicts` finishes what fails here or never runs). A ``Failed`` that could not be
        kept is recorded now unless CodeDeploy refused it (now or never)."""
        if not outcome.deployment_id:
            return  # a malformed event without a deployment id: the log has it
        if pending and outcome.execution_id is not None:
            try:
                if self._finish_kept(outcome.execution_id, outcome, outcome.answer) is not None:
                    return
            except Exception:
                logger.exception("cannot record the hook verdict", extra={**outcome.as_dict(), "pending": True})
                return
            # the kept verdict is gone (not written after all, or expired): record it as one not kept
        if outcome.status == "Failed" and outcome.answer == "refused":
            self._give_up_refused(outcome, None)
            return
        try:
            self._write_verdict(outcome, at or clock.now())
        except Exception:
            logger.exception("cannot record the hook verdict", extra={**outcome.as_dict(), "pending": False})

    def finish_verdicts(
        self, max_items: int = 100, seconds_left: Callable[[], float] | None = None
    ) -> list[dict[str, Any]]:
        """Record the Failed verdicts whose recording failed when CodeDeploy was answered (the
        deployment's record, ``validation.failed`` and its alert); the recorder's schedule calls
        this, after its sweep of unanswered hooks. A verdict kept before CodeDeploy was answered is
        recorded only once the hook's answer marker says CodeDeploy has the ``Failed`` status
        (:meth:`_answer_of`): while unconfirmed it waits (the sweep sends it again), and one CodeDeploy
        refused is given up, not recorded (audited ``hook_verdict_refused``, as inline). One no answer
        marker tells of (sent after a failed claim, or to a malformed event) is sent again to learn
        CodeDeploy's answer. A verdict still failing, or waiting, after :data:`VERDICT_RETRY` is given
        up (logged). Each verdict: :meth:`_finish_kept`. Never raises."""
        finished: list[dict[str, Any]] = []
        try:
            waiting = list(self.answers.verdicts.pending(max_items))
        except Exception:
            logger.exception("cannot list the hook verdicts left unrecorded")
            return finished
        for marker in waiting:
            if seconds_left is not None and seconds_left() < FINISH_RESERVE_SECONDS:
                break
            try:
                summary = self._finish_kept(marker.key)
            except Exception as exc:  # still failing: the next run tries again
                logger.exception("cannot finish a hook verdict", extra={"execution_id": marker.key})
                summary = {"execution_id": marker.key, "deployment_id": marker.attributes.get("deployment_id"),
                           "recorded": False, "error": f"{type(exc).__name__}: {exc}"}  # fmt: skip
            if summary is not None and not summary.get("already"):
                finished.append(summary)
        return finished

    def _finish_kept(
        self, execution_id: str, outcome: HookOutcome | None = None, answer: str | None = None
    ) -> dict[str, Any] | None:
        """Finish one kept ``Failed`` verdict: record it (``outcome``: the hook's own, with its checks'
        details; else the kept one) once CodeDeploy has it, wait while the answer is unconfirmed, give it
        up when CodeDeploy refused it or after :data:`VERDICT_RETRY`. ``answer``: how CodeDeploy just took
        it (the caller's status call); else read from the answer marker (:meth:`_answer_of`), or, for a
        verdict no answer marker tells of (``unclaimed``), learned by sending the same Failed again.
        Returns what it did (None: no such verdict kept); raises when the recording fails (it stays pending)."""
        fresh = self.answers.verdicts.get(execution_id)  # the index lags: read the marker itself
        if fresh is None:
            return None
        summary: dict[str, Any] = {"execution_id": execution_id, "deployment_id": fresh.attributes.get("deployment_id")}
        if fresh.state == DONE:
            return {**summary, "recorded": True, "already": True}
        at = datetime.fromisoformat(str(fresh.attributes["at"]))
        if clock.now() - at > VERDICT_RETRY:
            logger.error("hook verdict never recorded, given up", extra=summary)
            self.answers.verdicts.done(execution_id, gave_up=True)
            return {**summary, "recorded": False, "gave_up": True}
        kept = HookOutcome.model_validate_json(str(fresh.attributes["outcome"]))
        verdict = outcome if outcome is not None else kept
        unclaimed = bool(fresh.attributes.get("unclaimed"))
        if not (unclaimed or fresh.attributes.get("before_answer")):  # kept after the answer (earlier versions)
            self._write_verdict(verdict, at)
            self.answers.verdicts.done(execution_id)
            return {**summary, "recorded": True}
        if answer == "unconfirmed":
            answer = None
        if answer is None:
            answer = self._ask_again(kept) if unclaimed and outcome is None else self._answer_of(execution_id)
        if answer is None:  # not confirmed yet: the sweep of unanswered hooks sends it again
            return {**summary, "recorded": False, "waiting": "the answer is not confirmed"}
        if answer not in ANSWERED:  # CodeDeploy never took this Failed: nothing to record
            self._give_up_refused(verdict, answer)
            self.answers.verdicts.done(execution_id, gave_up=True, answer=answer)
            return {**summary, "recorded": False, "gave_up": True, "answer": answer}
        verdict.answer = "accepted" if answer == "accepted" else "already_completed"
        verdict.reported = verdict.answer == "accepted"
        self._write_verdict(verdict, at)
        self.answers.verdicts.done(execution_id)
        return {**summary, "recorded": True}

    def _ask_again(self, kept: HookOutcome) -> str | None:
        """CodeDeploy's answer to the same ``Failed`` sent again (a verdict no answer marker tells of);
        None while unconfirmed. Safe: CodeDeploy takes a repeated status, or says it no longer waits."""
        assert kept.execution_id is not None
        report = self.codedeploy.report(kept.deployment_id, kept.execution_id, "Failed",
                                        budget_seconds=DEFAULT_BUDGET_SECONDS, sleep=self.sleep)  # fmt: skip
        return report.outcome if report.settled else None

    def _give_up_refused(self, outcome: HookOutcome, answer: str | None) -> None:
        """A ``Failed`` CodeDeploy refused (it does not wait on the execution as we asked, or another status
        was decided): not recorded as the deployment's failure; logged and audited once."""
        why = ": ".join(dict.fromkeys(x for x in (answer, outcome.report_error) if x)) or "refused"
        logger.error("hook verdict not recorded: CodeDeploy did not take it",
                     extra={"execution_id": outcome.execution_id, "deployment_id": outcome.deployment_id,
                            "answer": why})  # fmt: skip
        if not outcome.deployment_id:
            return
        try:
            if self.repository.find_deployment(outcome.deployment_id) is None:
                return
            self.repository.audit_once(
                outcome.deployment_id, f"hook-verdict-refused#{outcome.execution_id}", clock.now(),
                "hook_verdict_refused", ACTOR,
                f"{outcome.status}: {outcome.reason} (CodeDeploy did not take it: {why}; not recorded)",
                execution_id=outcome.execution_id, answer=why,
            )  # fmt: skip
        except Exception:
            logger.exception("cannot audit a refused hook verdict", extra={"execution_id": outcome.execution_id})

    def _answer_of(self, execution_id: str) -> str | None:
        """How CodeDeploy took the hook's ``Failed`` answer, from its answer marker: ``accepted`` or
        ``already_completed`` (CodeDeploy has it), ``refused`` (it never will: no Failed status of
        ours was taken, or another status was decided), None while not confirmed (or unknown)."""
        marker = self.answers.markers.get(execution_id)
        if marker is None or marker.state != DONE:
            return None
        if marker.result not in (None, "Failed"):  # another status was decided for this execution
            return f"decided {marker.result}"
        answer = marker.attributes.get("answer")
        return str(answer) if answer else None

    def _keep_pending(self, outcome: HookOutcome, at: datetime, *, unclaimed: bool = False) -> bool:
        """The ``Failed`` verdict, kept before CodeDeploy is answered until it is recorded (its checks without
        their details: what is announced), recorded once the answer is confirmed; ``unclaimed``: no answer
        marker will say so (the claim failed, a malformed event): the schedule asks CodeDeploy again."""
        if outcome.execution_id is None:
            return False
        kept = outcome.model_copy(update={"checks": [c.model_copy(update={"details": {}}) for c in outcome.checks]})
        extra = {"unclaimed": True} if unclaimed else {"before_answer": True}
        return self.answers.keep_verdict(outcome.execution_id, outcome.deployment_id, at, kept.model_dump_json(),
                                         **extra)  # fmt: skip

    def _audit_quietly(self, outcome: HookOutcome, action: str) -> None:
        if not outcome.deployment_id:
            return
        try:
            self.repository.audit(outcome.deployment_id, action, ACTOR, f"{outcome.status}: {outcome.reason}",
                                  execution_id=outcome.execution_id, reported=outcome.reported,
                                  report_error=outcome.report_error)  # fmt: skip
        except Exception:
            logger.exception("cannot audit the hook answer", extra=outcome.as_dict())

    def _write_verdict(self, outcome: HookOutcome, at: datetime) -> None:
        """Each part written once whatever the retries (the audit and the events keyed on the execution);
        raises when a part of a Failed verdict could not be written (it stays pending)."""
        assert outcome.deployment_id is not None
        deployment = self.repository.find_deployment(outcome.deployment_id)
        if deployment is None:  # answered before anything was learned (malformed event): record it now
            info = self.codedeploy.deployment(outcome.deployment_id)
            deployment = ensure_record(
                self.repository, self.config, info, clock.now(), "lifecycle hook", self.codedeploy
            )
        details = outcome.as_dict()
        self.repository.audit_once(
            deployment.deployment_id, f"hook-verdict#{outcome.execution_id}", at, "hook_verdict", ACTOR,
            f"{outcome.status}: {outcome.reason}",
            **{k: details[k] for k in ("phase", "lifecycle_event", "execution_id", "reported", "report_error",
                                       "passed", "failed", "warnings", "checks")},
        )  # fmt: skip
        if outcome.warning:  # a notification outage never touches the verdict: the outbox keeps the event
            warned = [c for c in outcome.checks if c.status == "warned"]
            try:
                self._announce(deployment, outcome, at, EventType.VALIDATION_WARNED, "Validation Warned",
                               Severity.WARNING, outcome.warning, warned)  # fmt: skip
            except Exception:
                logger.exception("cannot record the validation warning", extra={"execution_id": outcome.execution_id})
        if outcome.status != "Failed":
            return

        def failed(d: Deployment) -> None:
            if not d.status.is_terminal and d.phase != Phase.FAILED:  # once, whatever the retries
                d.phase = Phase.FAILED
                d.phase_history.append(PhaseChange(phase=Phase.FAILED, at=at, reason=outcome.reason[:300]))
                d.decision_reason, d.end_cause = outcome.reason[:500], None  # the hook's verdict, not a stop's

        deployment = self.repository.update_deployment(deployment.deployment_id, failed)
        failing_checks = [c for c in outcome.checks if c.status == "failed"]
        self._announce(deployment, outcome, at, EventType.VALIDATION_FAILED, "Validation Failed", Severity.ERROR,
                       outcome.reason, failing_checks)  # fmt: skip

    def _announce(
        self,
        deployment: Deployment,
        outcome: HookOutcome,
        at: datetime,
        kind: EventType,
        title: str,
        severity: Severity,
        message: str,
        checks: list[CheckResult],
    ) -> None:
        """Through the outbox (:mod:`deployguard.storage.outbox`, as every announcement): recorded,
        published, and given to the alert engine once per event id whatever the topic says; a
        publication or alert run that fails leaves it in the outbox and the minute tick finishes it
        (:func:`deployguard.workflows.reconciler.publish_outbox`). Raises only when the event cannot
        be recorded. Its id and time come from the execution and the verdict: a retry finds what an
        earlier attempt did."""
        digest = hashlib.sha256(f"{outcome.execution_id}#{kind.value}".encode()).hexdigest()[:16]
        event = DeploymentEvent.about(deployment, kind, title, message, event_id=f"ev-{digest}", at=at,
                                      severity=severity, details={"checks": [c.report() for c in checks]})  # fmt: skip
        engine = self.alert_engine
        alert: outbox.Alert | None = None if engine is None else (lambda e: engine().on_event(e, deployment))
        entry = self.repository.outbox_record(event, alerts=alert is not None)
        if entry.published:
            outbox.deliver(self.repository, self.publisher, entry, actor=ACTOR, alert=alert)
            return  # published by an earlier attempt (its alert run, if still due, is finished here)
        if outbox.deliver(self.repository, self.publisher, entry, actor=ACTOR, alert=alert):
            self._audit_best_effort(deployment.deployment_id, "notification", f"{kind.value}: {title}",
                                    event_id=event.event_id)  # fmt: skip
        else:
            self._audit_best_effort(deployment.deployment_id, "notification_deferred",
                                    f"{kind.value}: {title}: left in the outbox for the next tick",
                                    event_id=event.event_id)  # fmt: skip

    def _audit_best_effort(self, deployment_id: str, action: str, reason: str, **details: Any) -> None:
        try:
            self.repository.audit(deployment_id, action, ACTOR, reason, **details)
        except Exception:
            logger.exception("cannot audit", extra={"deployment_id": deployment_id, "action": action})


def _missing_evidence(window: CanaryWindow, settings: JudgeSettings, verdict: Verdict) -> str | None:
    """What a guarded metric misses (each metric and why: CloudWatch's error status, periods without
    datapoint while its version was invoked) when that kept the verdict inconclusive; None otherwise."""
    if verdict.decision != Decision.INCONCLUSIVE:
        return None
    from deployguard.analysis.judge import evaluate_metrics

    missing = [r for r in evaluate_metrics(window, settings) if r.missing and r.blocks_healthy]
    return "; ".join(r.message for r in missing) or None


def _event_unknown(info: CodeDeployDeployment) -> bool:
    """ECS: CodeDeploy names no hook in progress and nothing says production traffic reached green."""
    return info.lifecycle_event not in ECS_HOOKS and not info.new_traffic_weight and not info.production_traffic_moved


def _before_traffic_hook(info: CodeDeployDeployment) -> bool:
    """ECS: CodeDeploy shows a hook before AfterAllowTraffic in progress and nothing says production
    traffic reached green (what a read from before AllowTraffic shows)."""
    event = info.lifecycle_event
    return (
        event in ECS_HOOKS and event != "AfterAllowTraffic"
        and not info.new_traffic_weight and not info.production_traffic_moved
    )  # fmt: skip


def _stale_read(info: CodeDeployDeployment, answered: Sequence[str]) -> bool:
    """ECS: the hook GetDeploymentTarget shows in progress (or one after it) was answered already under another
    hook execution (``answered``): CodeDeploy runs each hook once, so the read is older than this execution."""
    event = info.lifecycle_event
    if not _before_traffic_hook(info) or event is None:
        return False
    return any(ECS_HOOKS.index(a) >= ECS_HOOKS.index(event) for a in answered)


def _traffic_moved(events: Sequence[tuple[str, str]]) -> bool:
    return any(name == "AllowTraffic" and status not in ("Pending", "Skipped") for name, status in events)


def _summarise(name: str, results: list[CheckResult]) -> Validated:
    """The verdict of a list of checks; the warned ones make the warning (announced once answered)."""
    failed = [r for r in results if r.status == "failed"]
    warned = [r for r in results if r.status == "warned"]
    summary = f"{name}: {len(results) - len(failed) - len(warned)} passed, {len(failed)} failed, {len(warned)} warned"
    warning = "; ".join(f"{r.name}: {r.message}" for r in warned) or None
    if failed:
        return "Failed", f"{summary}: " + "; ".join(f"{r.name}: {r.message}" for r in failed), results, warning
    return "Succeeded", summary, results, warning


def answer_without_setup(
    raw: Any, reason: str, codedeploy: CodeDeployGateway | None = None, *, sleep: Sleep = clock.sleep
) -> HookOutcome:
    """Answer ``Failed`` when the hook cannot even be built (configuration or table unreadable).

    Nothing can be recorded then, so there is no once-only claim: CodeDeploy takes one result
    per execution and refuses a status once it no longer waits on it
    (LifecycleEventAlreadyCompletedException), which is the guard.
    """
    deployment_id, execution_id = _ids_of(raw)
    if execution_id is None:
        return _unanswerable(deployment_id, reason)
    outcome = HookOutcome(execution_id=execution_id, deployment_id=deployment_id, status="Failed", reason=reason)
    try:
        report = (codedeploy or CodeDeployGateway()).report(deployment_id, execution_id, "Failed", sleep=sleep)
    except Exception as exc:  # never raise: the log has it
        logger.exception("cannot answer CodeDeploy")
        outcome.report_error = f"{type(exc).__name__}: {exc}"
        return outcome
    _apply(outcome, report)
    return outcome


def _apply(outcome: HookOutcome, report: StatusReport) -> None:
    """How the status call ended, on the outcome: reported only when CodeDeploy accepted it."""
    outcome.reported = report.outcome == "accepted"
    outcome.report_error = report.error
    outcome.report_attempts = report.attempts
    outcome.answer = report.outcome


def _ids_of(raw: Any) -> tuple[str | None, str | None]:
    """The deployment id (only a well-formed one) and the execution id of a possibly malformed event."""
    raw_dict = raw if isinstance(raw, dict) else {}
    execution_id = raw_dict.get("LifecycleEventHookExecutionId")
    deployment_id = raw_dict.get("DeploymentId")
    well_formed = isinstance(deployment_id, str) and re.fullmatch(_DEPLOYMENT_ID, deployment_id)
    answerable = isinstance(execution_id, str) and execution_id.strip() and len(execution_id) <= 256
    return (deployment_id if well_formed else None), (execution_id if answerable else None)


def _unanswerable(deployment_id: str | None, reason: str) -> HookOutcome:
    return HookOutcome(execution_id=None, deployment_id=deployment_id, status=None,
                       reason=reason + " (no execution id: nothing to answer CodeDeploy with)")  # fmt: skip
