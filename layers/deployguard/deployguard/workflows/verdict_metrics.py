"""EMF metrics of every verdict, per service: what the dashboard draws and CodeDeploy alarms watch.

After each assessment (the canary state machine's and the scheduled assessor's) DeployGuard
writes, in the ``DeployGuard`` namespace with dimensions ``DeployedService``, ``Environment`` and
Powertools' ``service`` (``deployguard``):

- ``CanaryFailing`` (Count): 1 when the verdict is failing, else 0, one sample every verdict.
  Put an alarm on it (Maximum >= 1) and list the alarm under ``DeploymentPreference.Alarms``:
  CodeDeploy then rolls back on its own. Its ``Sum`` counts the failing verdicts, its
  ``SampleCount`` all verdicts;
- ``VerdictInconclusive`` (Count): 1, written only for an inconclusive verdict (healthy ones
  are ``SampleCount - Sum`` of ``CanaryFailing`` less these);
- ``HealthScore`` (None): 0-100, when known;
- ``CanaryTrafficWeight`` (Percent): the new version's share of traffic.

CloudWatch bills a custom metric for every hour it is written in, so a service's canary costs
the metrics written every verdict: three (``VerdictHealthy`` and ``VerdictFailing``, one more
every look, counted nothing ``CanaryFailing`` does not count already).

They are written as CloudWatch embedded metric format (Powertools ``single_metric``) on the
function's log stream: no PutMetricData call, nothing to fail.
"""

from __future__ import annotations

import os

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from deployguard.models import Assessment, Decision, Deployment

NAMESPACE_ENV = "POWERTOOLS_METRICS_NAMESPACE"


def verdict_metric_points(deployment: Deployment, assessment: Assessment) -> list[tuple[str, MetricUnit, float]]:
    decision = assessment.verdict.decision
    points = [
        ("CanaryFailing", MetricUnit.Count, 1.0 if decision == Decision.FAILING else 0.0),
        ("CanaryTrafficWeight", MetricUnit.Percent, round(assessment.canary_weight * 100, 3)),
    ]
    if decision == Decision.INCONCLUSIVE:
        points.append(("VerdictInconclusive", MetricUnit.Count, 1.0))
    if assessment.health_score is not None:
        points.append(("HealthScore", MetricUnit.NoUnit, float(assessment.health_score)))
    return points


def publish_verdict_metrics(deployment: Deployment, assessment: Assessment) -> None:
    """Write the verdict's metrics as EMF (stdout; CloudWatch Logs turns them into metrics)."""
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() == "true":
        return
    dimensions = {"DeployedService": deployment.service, "Environment": deployment.environment}
    namespace = os.environ.get(NAMESPACE_ENV, "DeployGuard")
    for name, unit, value in verdict_metric_points(deployment, assessment):
        with single_metric(name=name, unit=unit, value=value, namespace=namespace, default_dimensions=dimensions):
            pass
