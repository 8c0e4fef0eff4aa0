"""EMF metrics of every verdict, per service: what CodeDeploy alarms watch and the dashboard draws.

After each assessment (the canary state machine's and the scheduled assessor's) DeployGuard
writes one embedded metric format record, in the ``DeployGuard`` namespace with dimensions
``DeployedService``, ``Environment`` and Powertools' ``service`` (``deployguard``):

- ``CanaryFailing`` (Count), the one metric: 1 when the verdict is failing, else 0, one sample
  every verdict. Put an alarm on it (Maximum >= 1) and list the alarm under
  ``DeploymentPreference.Alarms``: CodeDeploy then rolls back on its own. Its ``Sum`` counts the
  failing verdicts, its ``SampleCount`` all verdicts;
- in the same record, as properties (searchable with CloudWatch Logs Insights, which the
  dashboard's by-service table uses; not metrics): ``Decision`` (healthy, failing,
  inconclusive), ``HealthScore`` (0-100, when known), ``CanaryTrafficWeight`` (the new version's
  share of traffic, percent) and ``DeploymentId``.

CloudWatch bills a custom metric for every hour it is written in: a service's canary costs one
metric for those hours, not the four (a count per decision, the score, the weight) it cost
when each was a metric of its own; nobody alarms on the others.
"""

from __future__ import annotations

import os

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from deployguard.models import Assessment, Decision, Deployment

NAMESPACE_ENV = "POWERTOOLS_METRICS_NAMESPACE"


VERDICT_METRIC = "CanaryFailing"  # the one metric of a verdict (billed by CloudWatch)


def canary_failing(assessment: Assessment) -> float:
    """The verdict's CanaryFailing value: 1 when failing, else 0."""
    return 1.0 if assessment.verdict.decision == Decision.FAILING else 0.0


def verdict_properties(deployment: Deployment, assessment: Assessment) -> dict[str, str | float]:
    """What the verdict's EMF record carries besides its metrics (not billed as metrics)."""
    properties: dict[str, str | float] = {
        "Decision": assessment.verdict.decision.value,
        "CanaryTrafficWeight": round(assessment.canary_weight * 100, 3),
        "DeploymentId": deployment.deployment_id,
    }
    if assessment.health_score is not None:
        properties["HealthScore"] = float(assessment.health_score)
    return properties


def publish_verdict_metrics(deployment: Deployment, assessment: Assessment) -> None:
    """Write the verdict's EMF record (stdout; CloudWatch Logs turns its metrics into metrics)."""
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() == "true":
        return
    dimensions = {"DeployedService": deployment.service, "Environment": deployment.environment}
    namespace = os.environ.get(NAMESPACE_ENV, "DeployGuard")
    value = canary_failing(assessment)
    with single_metric(
        name=VERDICT_METRIC, unit=MetricUnit.Count, value=value, namespace=namespace, default_dimensions=dimensions
    ) as m:
        for key, each in verdict_properties(deployment, assessment).items():
            m.add_metadata(key, each)
