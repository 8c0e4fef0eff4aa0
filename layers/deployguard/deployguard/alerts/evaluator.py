"""Evaluating the rules against one assessment or event: pure, no storage, no AWS."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from deployguard import clock
from deployguard.alerts.expression import Unit
from deployguard.alerts.fields import EvaluationContext, build_context
from deployguard.alerts.models import Alert, derived_alert_id
from deployguard.models import Assessment, Deployment, DeploymentEvent, EcsTarget, LambdaTarget

if TYPE_CHECKING:
    from deployguard.alerts.settings import AlertingSettings, AlertRule


@dataclass
class Evaluation:
    """The outcome of every rule that applies: fired (true), clear (false), unknown (None)."""

    context: EvaluationContext
    fired: list[Alert] = field(default_factory=list)
    clear: list[AlertRule] = field(default_factory=list)
    unknown: list[AlertRule] = field(default_factory=list)


def grouping_key(rule: AlertRule, deployment_id: str, service: str, environment: str) -> str:
    parts = {
        "deployment_id": deployment_id,
        "service": service,
        "environment": environment,
        "group": rule.incident_group,
        "rule": rule.name,
    }
    return "#".join(parts[p] for p in rule.grouping_key)


def alert_id_of(rule: str, assessment: Assessment | None, event: DeploymentEvent | None) -> str | None:
    """The id of the alert a rule raises on an assessment or an event: the same on every evaluation of
    it (a retry of the alert engine on the same event joins the incident once); None (a new id) for
    the tick's deployment-only rules."""
    source = event.event_id if event is not None else assessment.assessment_id if assessment is not None else None
    if source is None:
        return None
    return derived_alert_id(source, rule)


def _format(value: float | str | None, unit: Unit | None = None) -> str:
    """A reading as people read it: rates in percent (``7.95%``, not 0.07948), milliseconds with their unit."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if unit is Unit.RATIO:
            return f"{number * 100:.3g}%"
        if unit in (Unit.PERCENT, Unit.SCORE):
            return f"{number:.4g}" + ("%" if unit is Unit.PERCENT else "")
        if unit is Unit.MILLISECONDS:
            return f"{number:.4g} ms"
        return f"{number:.4g}"
    return str(value)


def _reading(name: str, value: float | str | None, base: float | None, unit: Unit | None) -> str:
    """``error_rate=7.95% vs baseline 0.61%``: the value, and the baseline's when there is one."""
    text = f"{name}={_format(value, unit)}"
    return text + (f" vs baseline {_format(base, unit)}" if base is not None else "")


class RuleEvaluator:
    def __init__(self, settings: AlertingSettings) -> None:
        self.settings = settings

    def evaluate(
        self,
        *,
        deployment: Deployment | None = None,
        assessment: Assessment | None = None,
        event: DeploymentEvent | None = None,
        metric_values: Mapping[str, float | None] | None = None,
        baseline_values: Mapping[str, float | None] | None = None,
        now: datetime | None = None,
    ) -> Evaluation:
        """Evaluate every enabled rule in scope; an alert for each rule whose condition is true."""
        if deployment is None and event is None:
            raise ValueError("evaluate needs a deployment or an event")
        at = now or clock.now()
        context = build_context(
            now=at,
            deployment=deployment,
            assessment=assessment,
            event=event,
            metric_values=metric_values,
            baseline_values=baseline_values,
        )
        result = Evaluation(context=context)
        if not self.settings.enabled:
            return result
        deployment_id = deployment.deployment_id if deployment else event.deployment_id  # type: ignore[union-attr]
        service = deployment.service if deployment else event.service  # type: ignore[union-attr]
        environment = deployment.environment if deployment else event.environment  # type: ignore[union-attr]
        version = deployment.version if deployment else event.version  # type: ignore[union-attr]
        stable = stable_version_of(deployment) if deployment else None
        for rule in self.settings.effective_rules:
            if not rule.applies_to(environment):
                continue
            expression = rule.compiled
            outcome = expression.evaluate(context.values, context.baseline)
            if outcome is None:
                result.unknown.append(rule)
                continue
            if not outcome:
                result.clear.append(rule)
                continue
            used = {name: context.values.get(name) for name in sorted(expression.fields)}
            base = {name: context.baseline.get(name) for name in sorted(expression.fields) if name in context.baseline}
            units = self.settings.fields
            readings = ", ".join(
                _reading(k, v, base.get(k), units.get(k)) for k, v in used.items() if v is not None and v != ""
            )
            fired_on = " or ".join(expression.true_branches(context.values, context.baseline))
            what = rule.description or rule.expression
            same = alert_id_of(rule.name, assessment, event)
            result.fired.append(
                Alert(
                    **({"alert_id": same} if same else {}),
                    rule=rule.name,
                    group=rule.incident_group,
                    grouping_key=grouping_key(rule, deployment_id, service, environment),
                    severity=rule.severity,
                    source="event" if event is not None else "assessment",
                    deployment_id=deployment_id,
                    service=service,
                    environment=environment,
                    version=version,
                    stable_version=stable,
                    title=f"{rule.severity.value.upper()}: {rule.name} on {service} {version}"
                    + (f" (stable {stable})" if stable else ""),
                    message=_message(what, fired_on, readings),
                    expression=rule.expression,
                    values=used,
                    baseline=base,
                    routes=list(rule.routes or self.settings.default_routes),
                    escalation_policy=self.settings.escalation.policy_for(rule.escalation, rule.severity),
                    auto_resolve=rule.auto_resolve,
                    assessment_id=assessment.assessment_id if assessment else None,
                    event_id=event.event_id if event else None,
                    at=at,
                )
            )
        return result


def _message(what: str, fired_on: str, readings: str) -> str:
    """``<description>: <the condition that fired> (<readings vs baseline>)``."""
    text = f"{what}: {fired_on}" if fired_on and fired_on != what else what
    return f"{text} ({readings})" if readings else text


def stable_version_of(deployment: Deployment) -> str | None:
    """The version the new one is judged against: the Lambda alias's stable version, or the ECS blue
    task set's task definition (``family:revision``); None while it is unknown."""
    target = deployment.target
    if isinstance(target, LambdaTarget):
        return target.stable_version if target.stable_version not in ("", "unknown") else None
    if isinstance(target, EcsTarget) and target.stable_task_definition:
        return target.stable_task_definition.rsplit("/", 1)[-1]
    return None
