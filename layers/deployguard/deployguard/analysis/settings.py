"""The judge's and the health score's settings models, and the metric presets.

The configuration loader composes these models (``deployguard.config``) without importing the
judge's or the health score's rules; :mod:`deployguard.analysis.judge` and
:mod:`deployguard.analysis.health` import them from here.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deployguard.analysis.stats import percentile_of_stat
from deployguard.models import Direction, MetricKind, MetricSpec, MetricType

# Harmful alternatives the CUSUMs test at once (relative changes in the bad direction).
RATE_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 9.0, 29.0, 99.0)
RATE_DROP_GRID = (0.15, 0.25, 0.4, 0.55, 0.7, 0.9, 0.99)
LATENCY_GRID = (0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 1.5, 2.5, 4.0)
# gross slowdowns (7x, 11x, 16x): a heavy-tailed period weighs most for the shift it matches, so
# a canary 10x slower needs alternatives near 10x to tell at once; they get a small share of the
# latency test's budget (``LATENCY_GROSS_SHARE``), the common shifts keep the rest
LATENCY_GROSS_GRID = (6.0, 10.0, 15.0)
LATENCY_GROSS_SHARE = 0.06
GAUGE_GRID = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0)  # in noise standard deviations
# The threshold from the confidence is that of a canary of 30 periods (the run the false alarm
# budget was measured on, ``deployguard_local.judge_montecarlo``); a canary whose run is planned
# longer or shorter moves it by the log of the ratio, so that its whole run stays within budget
# (a constant hazard a period: a run twice as long has twice the chances). Shorter than 15
# periods, the first periods' lower hazard no longer makes up for it: 15 is the floor.
HORIZON_REFERENCE_PERIODS = 30
HORIZON_FLOOR_PERIODS = 15
ALTERNATIVES = max(len(RATE_GRID), len(RATE_DROP_GRID), len(LATENCY_GRID), len(GAUGE_GRID))

# --------------------------------------------------------------------------- settings


def default_metrics() -> list[MetricSpec]:
    """The Lambda metrics every canary has, under the ids the scenario format uses."""
    return [
        MetricSpec(id="invocations", name="Invocations", stat="Sum", unit="Count", kind=MetricKind.COUNT),
        MetricSpec(
            id="errors",
            name="Errors",
            stat="Sum",
            unit="Count",
            kind=MetricKind.RATE_COUNT,
            relative_to="invocations",
        ),
        MetricSpec(
            id="throttles",
            name="Throttles",
            stat="Sum",
            unit="Count",
            kind=MetricKind.RATE_COUNT,
            relative_to="invocations",
            metric_type=MetricType.INFRASTRUCTURE,
            # a throttled request runs no version: unlike Errors, no datapoint is no throttle
            # (a failed query is still a gap, never zero)
            fill_missing=0.0,
            # a version that throttles (its concurrency, a reserved concurrency set wrong) rejects
            # a share of its requests from the first minute: large when it comes, told with a
            # fifth of another metric's share of the budget, which the others get instead
            budget_weight=0.2,
        ),
        MetricSpec(
            id="duration_p50",
            name="Duration",
            stat="p50",
            unit="Milliseconds",
            kind=MetricKind.LATENCY,
            metric_type=MetricType.PERFORMANCE,
        ),
        MetricSpec(
            id="duration_p99",
            name="Duration",
            stat="p99",
            unit="Milliseconds",
            kind=MetricKind.LATENCY,
            metric_type=MetricType.PERFORMANCE,
        ),
    ]


def alb_metrics() -> list[MetricSpec]:
    """The load balancer metrics of an ECS service's task sets, each behind its own target group.

    AWS/ApplicationELB publishes a target group's 5XX count only in periods that had
    one, so a missing datapoint of ``errors`` counts as zero.
    """
    return [
        MetricSpec(
            id="requests", namespace="AWS/ApplicationELB", name="RequestCount", stat="Sum", unit="Count",
            kind=MetricKind.COUNT,
        ),
        MetricSpec(
            id="errors", namespace="AWS/ApplicationELB", name="HTTPCode_Target_5XX_Count", stat="Sum", unit="Count",
            kind=MetricKind.RATE_COUNT, relative_to="requests", fill_missing=0.0,
        ),
        MetricSpec(
            id="latency_p50", namespace="AWS/ApplicationELB", name="TargetResponseTime", stat="p50", unit="Seconds",
            kind=MetricKind.LATENCY, metric_type=MetricType.PERFORMANCE,
        ),
        MetricSpec(
            id="latency_p99", namespace="AWS/ApplicationELB", name="TargetResponseTime", stat="p99", unit="Seconds",
            kind=MetricKind.LATENCY, metric_type=MetricType.PERFORMANCE,
        ),
    ]  # fmt: skip


METRIC_PRESETS = {"lambda": default_metrics, "alb": alb_metrics}


_LAMBDA_EVENT_COUNTS = {"errors", "throttles", "deadlettererrors", "destinationdeliveryfailures"}
_TIME_UNITS = {"milliseconds", "seconds", "microseconds"}


def infer_kind(spec: dict[str, Any] | MetricSpec) -> MetricKind:
    """What a metric is, from its CloudWatch description, when the user did not say."""
    get = spec.get if isinstance(spec, dict) else (lambda key, default=None: getattr(spec, key, default))
    if get("relative_to"):
        return MetricKind.RATE_COUNT
    name = str(get("name", "") or "").lower()
    namespace = str(get("namespace", "AWS/Lambda") or "AWS/Lambda")
    stat = str(get("stat", "Sum") or "Sum")
    unit = str(get("unit", "") or "").lower()
    if namespace == "AWS/Lambda" and name == "invocations":
        return MetricKind.COUNT
    if namespace == "AWS/Lambda" and name in _LAMBDA_EVENT_COUNTS:
        return MetricKind.RATE_COUNT
    if percentile_of_stat(stat) is not None or unit in _TIME_UNITS or re.search(r"duration|latency", name):
        return MetricKind.LATENCY
    return MetricKind.GAUGE


def resolve_spec(spec: MetricSpec, ids: set[str] | None = None) -> MetricSpec:
    """A spec whose kind (and, for Lambda event counts, relative_to) is filled in when not given."""
    updates: dict[str, Any] = {}
    kind = spec.kind
    if "kind" not in spec.model_fields_set:
        kind = infer_kind(spec)
        if kind != spec.kind:
            updates["kind"] = kind
    if kind == MetricKind.RATE_COUNT and not spec.relative_to and (ids is None or "invocations" in ids):
        updates["relative_to"] = "invocations"
    if "metric_type" not in spec.model_fields_set and spec.metric_type == MetricType.APPLICATION:
        if kind == MetricKind.LATENCY:
            updates["metric_type"] = MetricType.PERFORMANCE
        elif not spec.namespace.startswith("AWS/"):
            updates["metric_type"] = MetricType.BUSINESS
    return spec.model_copy(update=updates) if updates else spec


def _fallback_id(spec: MetricSpec, taken: set[str]) -> str:
    """``duration_p50`` for ``duration_p99``; ``<id>_p50`` when that is not free."""
    stem = re.sub(r"p\d+(\.\d+)?$", "", spec.id)
    for candidate in (f"{stem}p50" if stem != spec.id else "", f"{spec.id}_p50", f"{spec.id}_fallback_p50"):
        if candidate and re.fullmatch(r"[a-z][a-zA-Z0-9_]*", candidate) and candidate not in taken:
            return candidate
    n = 2
    while f"{spec.id}_p50_{n}" in taken:
        n += 1
    return f"{spec.id}_p50_{n}"


def fallback_percentiles(metrics: list[MetricSpec]) -> list[MetricSpec]:
    """The implicit p50 of every tail percentile (p99, p95, p90...) configured without a lower
    percentile of the same metric (namespace, name and dimensions).

    Below about 1 / tail invocations a period (100 for a p99) a tail percentile cannot be estimated,
    and the judge judges it through a lower percentile of the same metric (and reads the metric's
    spread from the two); a configuration with a p99 alone would leave a low-traffic canary never
    judged. So the reader reads a p50 beside it, like any metric, which the judge uses as that
    fallback. It is not a configured metric: not listed, not in the health score or alert fields;
    it is as ``optional`` as the percentile it stands in for. The judge judges it only while the
    tail percentile is judged through it (:func:`stand_ins`): otherwise it neither fails nor holds
    a canary, nor takes a share of the false-alarm budget. Only a percentile whose own kind is
    latency (given, or inferred when no kind is given) gets one."""
    return [fallback for _, fallback in _fallback_pairs(metrics)]


def _fallback_pairs(metrics: list[MetricSpec]) -> list[tuple[MetricSpec, MetricSpec]]:
    """(tail percentile, its implicit p50) for :func:`fallback_percentiles` and :func:`stand_ins`."""
    out: list[MetricSpec] = []
    pairs: list[tuple[MetricSpec, MetricSpec]] = []
    taken = {m.id for m in metrics}

    def same(a: MetricSpec, b: MetricSpec) -> bool:
        return (a.namespace, a.name, a.dimensions) == (b.namespace, b.name, b.dimensions)

    for spec in metrics:
        q = percentile_of_stat(spec.stat)
        # its own kind: as given, else inferred (a percentile configured ``kind: gauge``, a CPU p99, is none)
        if q is None or q <= 0.75 or resolve_spec(spec).kind != MetricKind.LATENCY:
            continue
        lower = [m for m in [*metrics, *out] if same(m, spec) and (percentile_of_stat(m.stat) or 1.0) < q]
        if lower:
            continue
        fid = _fallback_id(spec, taken)
        taken.add(fid)
        out.append(spec.model_copy(update={"id": fid, "stat": "p50", "kind": MetricKind.LATENCY, "budget_weight": 1.0}))
        pairs.append((spec, out[-1]))
    return pairs


def stand_ins(metrics: list[MetricSpec], read: list[Any] | None = None) -> dict[str, str]:
    """The id of every implicit p50 of these configured metrics (:func:`fallback_percentiles`) ->
    the id of the tail percentile it stands in for. Derived from the configuration, not marked on
    the spec: a window read with the implicit p50 (live, or recorded and replayed under the same
    configuration) is judged so, and a stored judge state's fingerprint is unchanged. With ``read``
    (the specs a window holds), the ids are those of the window's metrics that are the pair
    (:func:`same_metric`: a recording may hold them under other ids)."""
    pairs = _fallback_pairs(metrics)
    if read is None:
        return {fallback.id: tail.id for tail, fallback in pairs}
    found: dict[str, str] = {}
    for tail, fallback in pairs:
        tails = [r.id for r in read if same_metric(tail, r)]
        fallbacks = [r.id for r in read if same_metric(fallback, r)]
        if tails and fallbacks:
            found[fallbacks[0]] = tails[0]
    return found


def same_metric(configured: MetricSpec, read: Any) -> bool:
    """Whether a metric read (a window's spec, a recording's metric: anything with ``id``,
    ``namespace``, ``name`` and ``stat``) is this configured metric: the same id, or the same
    CloudWatch namespace, name and statistic under another id (``lambda_errors`` for Errors/Sum).
    The one rule by which the judge (a window whose settings name its metrics) and replay (a
    recording under ``--config``) tell a configured metric is there."""
    return read.id == configured.id or (read.namespace, read.name, read.stat) == (
        configured.namespace,
        configured.name,
        configured.stat,
    )


def with_fallbacks(metrics: list[MetricSpec]) -> list[MetricSpec]:
    """What is read for the judge: the configured metrics, then their implicit fallback percentiles
    (:func:`fallback_percentiles`)."""
    return [*metrics, *fallback_percentiles(metrics)]


class MinimumEffects(BaseModel):
    """The smallest changes that matter: smaller real differences are not failures."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    rate_relative: float = Field(
        default=0.05,
        ge=0.0,
        le=10.0,
        description="relative change of a rate (0.05: 5% more errors, 5% fewer conversions)",
    )
    rate_absolute: float = Field(
        default=0.0005,
        ge=0.0,
        le=1.0,
        description="and at least this absolute change of the rate (0.0005 = 0.05 points)",
    )
    latency_relative: float = Field(
        default=0.05, ge=0.0, le=10.0, description="relative change of a latency percentile"
    )
    gauge_relative: float = Field(default=0.1, ge=0.0, le=10.0, description="relative change of any other metric")
    gauge_absolute: float = Field(default=0.0, ge=0.0, description="and at least this absolute change")


class JudgeSettings(BaseModel):
    """Per-service configuration of the canary judge. Every field has a default."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    metrics_preset: Literal["lambda", "alb"] = Field(
        default="lambda",
        description="the metrics used when none are listed: lambda (AWS/Lambda per version) or alb "
        "(AWS/ApplicationELB per target group, for ECS blue/green task sets)",
    )
    metrics: list[MetricSpec] = Field(
        default_factory=default_metrics,
        description="metrics read for both versions; kind and relative_to are inferred when not given",
    )
    min_effect: MinimumEffects = Field(default_factory=MinimumEffects)
    confidence: float = Field(
        default=0.995, gt=0.5, lt=1.0, description="how sure the judge must be, all looks included, to fail a canary"
    )
    healthy_confidence: float = Field(
        default=0.9, gt=0.5, lt=1.0, description="how sure it must be that the canary is not much worse to pass it"
    )
    healthy_margin_absolute: float = Field(
        default=0.05, ge=0.0, le=1.0, description="a rate may be at most this much worse (absolute) to pass"
    )
    healthy_margin_relative: float = Field(
        default=0.5, ge=0.0, description="... or this much worse relative to the baseline, whichever is larger"
    )
    latency_healthy_margin: float = Field(
        default=0.5, ge=0.0, description="a latency percentile may be at most this much worse (relative) to pass"
    )
    min_canary_invocations: int = Field(default=50, ge=0, description="evidence needed before a canary can pass")
    min_periods: int = Field(default=3, ge=1, description="periods with canary traffic needed before it can pass")
    grace_periods: int = Field(
        default=2,
        ge=0,
        description="periods after each traffic shift whose latency and gauge evidence counts only as far as the "
        "periods after them confirm it (a p99 whose p50 did not move: up to twice as many)",
    )
    rate_grace_periods: int = Field(default=0, ge=0, description="the same for rates (errors, throttles)")
    max_inconclusive_periods: int = Field(
        default=10, ge=0, description="periods a canary may stay without evidence before on_no_evidence applies"
    )
    on_no_evidence: Literal["rollback", "hold"] = Field(
        default="hold", description="after max_inconclusive_periods without evidence: roll back, or hold for a person"
    )
    errors_metric: str | None = Field(
        default="errors",
        description="id of the error count: rates where decrease is bad (conversions) count out of successes",
    )
    outside_denominator: list[str] = Field(
        default_factory=lambda: ["throttles"],
        description="rate metrics whose events are not part of their relative_to count (a throttle is no invocation)",
    )
    latency_noise_floor: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="extra prior per-period wobble of a version's latency beyond sampling noise, in log units, "
        "on top of the prior drawn from the sampling noise itself; the data's own period-to-period spread "
        "outweighs both",
    )
    latency_min_samples: int = Field(
        default=1, ge=1, description="invocations a version-period needs for a median (tail percentiles need more)"
    )
    horizon_periods: int = Field(
        default=30,
        ge=1,
        description="the canary's planned run in periods (when not given: a service's canary plan, every step "
        "baked; CodeDeploy's deployment configuration for a canary it drives; the post-traffic hook's window): "
        "the false-alarm budget is spread over the whole run, the threshold rising with the log of "
        "its length (at least 15 periods); a run that outlasts it, waiting for evidence, pays more as it goes, "
        "so no canary accumulates false alarms",
    )

    @model_validator(mode="before")
    @classmethod
    def _infer_kinds(cls, data: Any) -> Any:
        if isinstance(data, dict) and "metrics" not in data and data.get("metrics_preset") in METRIC_PRESETS:
            data = dict(data) | {"metrics": METRIC_PRESETS[data["metrics_preset"]]()}
        if isinstance(data, dict) and isinstance(data.get("metrics"), list):
            metrics = []
            ids = {m.get("id") for m in data["metrics"] if isinstance(m, dict)}
            for m in data["metrics"]:
                if isinstance(m, dict) and "kind" not in m:
                    m = dict(m)
                    m["kind"] = infer_kind(m)
                    if m["kind"] == MetricKind.RATE_COUNT and not m.get("relative_to") and "invocations" in ids:
                        m["relative_to"] = "invocations"
                metrics.append(m)
            data = dict(data) | {"metrics": metrics}
        return data

    @model_validator(mode="after")
    def _references(self) -> JudgeSettings:
        ids = [m.id for m in self.metrics]
        for i, m in enumerate(self.metrics):
            if ids.count(m.id) > 1:
                raise ValueError(f"metrics.{i}.id: metric id {m.id!r} appears more than once")
            if m.relative_to is not None and m.relative_to not in ids:
                raise ValueError(f"metrics.{i}.relative_to: {m.relative_to!r} is not the id of a configured metric")
            if m.relative_to == m.id:
                raise ValueError(f"metrics.{i}.relative_to: a metric cannot be a rate of itself")
        return self

    @property
    def read_metrics(self) -> list[MetricSpec]:
        """The metrics read for the judge: ``metrics``, then the implicit p50 of a tail percentile
        configured without a lower one (:func:`fallback_percentiles`)."""
        return with_fallbacks(self.metrics)

    evidence_threshold: float | None = Field(
        default=None, gt=0.0, description="expert: the CUSUM threshold itself, instead of one derived from confidence"
    )

    @property
    def threshold(self) -> float:
        """CUSUM threshold (log-likelihood ratio), from the confidence: log(1 / (1 - confidence))
        plus room for the alternatives tried at once (a union bound over the grid)."""
        if self.evidence_threshold is not None:
            return self.evidence_threshold
        return math.log(1.0 / (1.0 - self.confidence)) + math.log(ALTERNATIVES)

    def threshold_for(self, tests: int) -> float:
        """The threshold each of ``tests`` metric tests judged at once must reach when the false-alarm
        budget ``1 - confidence`` is split evenly over them (Bonferroni), so that the canary, not
        each metric, is rolled back wrongly at most that often. An ``evidence_threshold`` is used
        as it is."""
        return self.threshold_for_share(1.0 / max(1, tests))

    def threshold_for_share(self, share: float) -> float:
        """The threshold of a metric test that gets ``share`` of the canary's false-alarm budget (its
        ``budget_weight`` over those of the metrics judged at once: a weighted Bonferroni split)."""
        if self.evidence_threshold is not None:
            return self.evidence_threshold
        return self.threshold + math.log(1.0 / share)

    def for_run(self, periods: int) -> JudgeSettings:
        """These settings for a run planned to last ``periods`` periods (a canary plan, CodeDeploy's
        deployment configuration, a post-traffic window, a recording): its horizon, unless
        ``horizon_periods`` was given. Derived, not given: the field stays out of the fields set, so
        a copy for another run sets its own."""
        if "horizon_periods" in self.model_fields_set:
            return self
        settings = self.model_copy(update={"horizon_periods": max(1, periods)})
        settings.__pydantic_fields_set__.discard("horizon_periods")
        return settings

    def horizon_penalty(self, period: int) -> float:
        """Added to the threshold at ``period``: the budget spread over the canary's whole run,
        ln(horizon / 30) (the base threshold is that of a 30-period canary; the horizon is at least
        15 periods; none with an expert's ``evidence_threshold``), and 2 ln((period + 1) / horizon)
        once the run outlasts its horizon."""
        horizon = max(self.horizon_periods, HORIZON_FLOOR_PERIODS)
        spread = 0.0 if self.evidence_threshold is not None else math.log(horizon / HORIZON_REFERENCE_PERIODS)
        return spread + 2.0 * math.log(max(1.0, (period + 1) / horizon))


# --------------------------------------------------------------------------- per-metric evidence


class MetricThreshold(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    id: str = Field(pattern=r"^[a-z][a-zA-Z0-9_]*$")
    metric_type: MetricType
    warning: float
    critical: float
    direction: Direction = Direction.INCREASE_IS_BAD
    unit: str = ""
    label: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> MetricThreshold:
        if self.direction == Direction.INCREASE_IS_BAD and self.critical < self.warning:
            raise ValueError(f"critical ({self.critical}) must not be below warning ({self.warning})")
        if self.direction == Direction.DECREASE_IS_BAD and self.critical > self.warning:
            raise ValueError(f"critical ({self.critical}) must not be above warning ({self.warning})")
        return self

    @property
    def title(self) -> str:
        return self.label or self.id.replace("_", " ")


def default_catalogue() -> list[MetricThreshold]:
    T = MetricThreshold
    A, INF, B = MetricType.APPLICATION, MetricType.INFRASTRUCTURE, MetricType.BUSINESS
    P, S = MetricType.PERFORMANCE, MetricType.SECURITY
    return [
        T(id="error_rate", metric_type=A, warning=2.0, critical=5.0, unit="%", label="error rate"),
        T(id="latency_p99_ms", metric_type=P, warning=1000.0, critical=2000.0, unit="ms", label="p99 latency"),
        T(id="cpu_utilization", metric_type=INF, warning=70.0, critical=90.0, unit="%", label="CPU"),
        T(id="memory_utilization", metric_type=INF, warning=80.0, critical=95.0, unit="%", label="memory"),
        T(id="disk_utilization", metric_type=INF, warning=85.0, critical=95.0, unit="%", label="disk"),
        T(
            id="conversion_rate_drop",
            metric_type=B,
            warning=10.0,
            critical=20.0,
            unit="%",
            label="conversion-rate drop",
        ),
        T(
            id="revenue_impact_per_hour",
            metric_type=B,
            warning=1000.0,
            critical=5000.0,
            unit="/h",
            label="revenue impact",
        ),
        T(id="auth_failure_rate", metric_type=S, warning=1.0, critical=5.0, unit="%", label="authentication failures"),
    ]


def default_type_weights() -> dict[MetricType, float]:
    return {
        MetricType.APPLICATION: 0.35,
        MetricType.INFRASTRUCTURE: 0.25,
        MetricType.BUSINESS: 0.25,
        MetricType.PERFORMANCE: 0.10,
        MetricType.SECURITY: 0.05,
    }


class HealthSettings(BaseModel):
    """The metric catalogue with thresholds, and the weight of each metric type in the score."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    catalogue: list[MetricThreshold] = Field(default_factory=default_catalogue)
    extra_metrics: list[MetricThreshold] = Field(
        default_factory=list, description="custom metrics, or overrides of catalogue entries by id"
    )
    type_weights: dict[MetricType, float] = Field(default_factory=default_type_weights)
    warning_score: float = Field(default=80.0, ge=0, le=100, description="a score below this is a warning")
    critical_score: float = Field(default=50.0, ge=0, le=100, description="a score below this is critical")

    @model_validator(mode="after")
    def _weights(self) -> HealthSettings:
        for kind, weight in self.type_weights.items():
            if weight < 0:
                raise ValueError(f"type_weights.{kind.value}: weight must not be negative")
        if sum(self.type_weights.values()) <= 0:
            raise ValueError("type_weights: at least one weight must be positive")
        if self.critical_score > self.warning_score:
            raise ValueError("critical_score: must not be above warning_score")
        return self

    def thresholds(self) -> dict[str, MetricThreshold]:
        merged = {t.id: t for t in self.catalogue}
        merged.update({t.id: t for t in self.extra_metrics})
        return merged
