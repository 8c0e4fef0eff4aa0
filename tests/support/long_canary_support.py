"""What the bounded console tests share: the assessment of one look of a long canary (12 passing reasons,
about 3.5 KB stored), so that thousands of them weigh what a day-long canary's history weighs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from deployguard.models import Assessment, Decision, HealthStatus, Verdict, VerdictReason


def look(
    deployment_id: str, at: datetime, n: int, summary: str, *, decision: Decision = Decision.HEALTHY, post: bool = False
) -> Assessment:
    """Look ``n`` (id ``as-0000n``) at ``at``; ``post``: a post-deployment look."""
    reasons = [
        VerdictReason(metric_id=f"metric_{k}", status="pass", effect=0.01 * k, baseline_value=12.5 + k,
                      canary_value=12.7 + k, confidence=0.95, canary_bound=13.9 + k,
                      message=f"metric_{k}: canary 12.7 against baseline 12.5, within the 10% margin (look {n})")
        for k in range(12)
    ]  # fmt: skip
    verdict = Verdict(decision=decision, summary=summary, reasons=reasons, periods=5)
    details: dict[str, Any] = {"health": {"business_impact": 0.4, "score": 97.0}}
    if post:
        details["kind"] = "post_deployment"
    return Assessment(assessment_id=f"as-{n:05d}", deployment_id=deployment_id, at=at, canary_weight=0.1,
                      verdict=verdict, health_status=HealthStatus.HEALTHY, health_score=97.0,
                      details=details)  # fmt: skip
