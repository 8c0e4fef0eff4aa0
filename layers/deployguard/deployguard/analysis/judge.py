"""The canary judge: is the new version worse than the stable one, period by period?

``judge_canary(window, settings)`` is a pure function of the periods 0..n-1 it is
given. It is called every period, live by the assessor and the state machine, and by
``deployguard replay`` on recorded scenarios, so it must not raise false alarms just
because it looks often. How each kind of metric is tested:

- **rates** (errors, throttles out of invocations; conversions out of successful
  invocations): counts are compared as counts, in the same periods. Given the events
  of both versions in a period, the canary's share of them follows a binomial law
  whose parameter depends only on the canary's relative risk ``theta`` and the two
  denominators, so anything that hits both versions in that period (an incident, a
  traffic spike) cancels out. For a grid of harmful relative risks a one-sided
  CUSUM (Page's test, the repeated sequential probability ratio test) of
  "theta = harmful" against "theta = the smallest change that matters" runs over all
  periods; the canary fails when one crosses a threshold set from the confidence.
  Looking every period does not inflate false alarms: the CUSUM is built to be
  looked at after every observation.
- **latency percentiles**: the paired log-difference canary minus baseline in each
  period, whose noise is that of a sample quantile of n draws (known from the
  percentile, the traffic of each version and the spread of the distribution, read
  from the baseline's own p50/p99) plus each version's own wobble between periods,
  estimated from the data (both versions' own period-to-period steps, robustly, with
  their memory and rare spikes, and a prior that fades as the periods add up). A
  median is read from one invocation; a p99 with too few invocations per period is
  judged through the p50 of the same metric. The same CUSUM runs on it, with no cap:
  a period's evidence counts up to twice the next largest of its run (one odd minute
  cannot fail a release alone, a confirmed one fails it at once).
- **gauges**: paired differences with a noise level estimated robustly from the
  data itself.

A canary without enough evidence (too few invocations or periods) is inconclusive,
never healthy; so is one whose guarded metric is missing (a CloudWatch error status,
or no datapoint in a period its version was invoked: missing, never zero) unless the
metric is ``optional``. Just after a traffic shift, latency and gauge evidence is told
apart by shape: it counts only as far as the first period after the grace periods
confirms it (a cold start decays, a regression persists). Beyond ``horizon_periods``
the threshold grows with the log of the canary's length, so a long canary does not
accumulate false alarms.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deployguard.analysis.stats import (
    mad_sigma,
    median,
    norm_ppf,
    percentile_of_stat,
    quantile_noise_factor,
    quantile_small_sample_bias,
    rate_bounds,
    robust_cusum_peak,
)
from deployguard.models import (
    CanaryWindow,
    Decision,
    Direction,
    MetricKind,
    MetricSpec,
    MetricType,
    MetricWindow,
    Verdict,
    VerdictReason,
)

JUDGE_NAME = "deployguard"

# Harmful alternatives the CUSUMs test at once (relative changes in the bad direction).
_RATE_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 9.0, 29.0, 99.0)
_RATE_DROP_GRID = (0.15, 0.25, 0.4, 0.55, 0.7, 0.9, 0.99)
_LATENCY_GRID = (0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 1.5, 2.5, 4.0)
_GAUGE_GRID = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0)  # in noise standard deviations
_ALTERNATIVES = max(len(_RATE_GRID), len(_RATE_DROP_GRID), len(_LATENCY_GRID), len(_GAUGE_GRID))

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
        default=2, ge=0, description="periods after each traffic shift in which latency and gauges are not judged"
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
        default=0.1,
        ge=0.0,
        le=1.0,
        description="prior per-period wobble of a version's latency beyond sampling noise, in log units; "
        "the data's own period-to-period spread updates it",
    )
    latency_min_samples: int = Field(
        default=1, ge=1, description="invocations a version-period needs for a median (tail percentiles need more)"
    )
    horizon_periods: int = Field(
        default=30,
        ge=1,
        description="canary length the base threshold covers; beyond it the threshold grows with the log of the "
        "length, so a long canary does not accumulate false alarms",
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

    evidence_threshold: float | None = Field(
        default=None, gt=0.0, description="expert: the CUSUM threshold itself, instead of one derived from confidence"
    )

    @property
    def threshold(self) -> float:
        """CUSUM threshold (log-likelihood ratio), from the confidence: log(1 / (1 - confidence))
        plus room for the alternatives tried at once (a union bound over the grid)."""
        if self.evidence_threshold is not None:
            return self.evidence_threshold
        return math.log(1.0 / (1.0 - self.confidence)) + math.log(_ALTERNATIVES)

    def horizon_penalty(self, period: int) -> float:
        """Added to the threshold at ``period``: 2 ln((period + 1) / horizon_periods) past the horizon."""
        return 2.0 * math.log(max(1.0, (period + 1) / self.horizon_periods))


# --------------------------------------------------------------------------- per-metric tests


@dataclass
class _Result:
    spec: MetricSpec
    status: Literal["pass", "fail", "inconclusive"]
    message: str
    evidence: float = 0.0  # CUSUM statistic (log-likelihood ratio)
    effect: float | None = None
    baseline_value: float | None = None
    canary_value: float | None = None
    confidence: float | None = None
    at: int | None = None  # period the failing evidence peaked
    blocks_healthy: bool = True
    missing: bool = False  # a guarded metric without evidence (a reported gap, or silent while invoked)

    def reason(self) -> VerdictReason:
        return VerdictReason(
            metric_id=self.spec.id,
            status=self.status,
            effect=None if self.effect is None or not math.isfinite(self.effect) else round(self.effect, 4),
            baseline_value=self.baseline_value,
            canary_value=self.canary_value,
            confidence=None if self.confidence is None else round(min(1.0, max(0.0, self.confidence)), 6),
            message=self.message,
        )


def _at(values: list[float | None], i: int) -> float | None:
    return values[i] if i < len(values) else None


def _pct(x: float) -> str:
    return f"{100 * x:.3g}%"


def _confidence_of(evidence: float) -> float:
    """How sure a failing verdict is: the threshold of confidence c is reached at c (the union
    over the alternatives tried at once and the canary's length already paid for)."""
    return max(0.0, 1.0 - _ALTERNATIVES * math.exp(-evidence)) if evidence > 0 else 0.0


def _shape_periods(n: int, window: CanaryWindow, grace: int) -> set[int]:
    """Periods just after the start and after the last traffic shift (cold starts of new instances)."""
    shape: set[int] = set(range(min(grace, n)))
    since = window.periods_since_shift
    if since is not None and 0 < since <= n:
        shift = n - since
        shape.update(range(shift, min(n, shift + grace)))
    return shape


def _rate_test(
    spec: MetricSpec,
    num: MetricWindow,
    den: MetricWindow,
    minus: MetricWindow | None,
    add_numerator: bool,
    periods: list[int],
    settings: JudgeSettings,
    threshold: float,
    penalty: list[float],
) -> _Result:
    """Conditional binomial CUSUM on the relative risk of an event, canary vs baseline."""
    bad_up = spec.direction == Direction.INCREASE_IS_BAD
    rel = settings.min_effect.rate_relative
    theta0 = 1.0 + rel if bad_up else max(1e-6, 1.0 - rel)
    grid = (
        [1.0 + g for g in _RATE_GRID if 1.0 + g > theta0]
        if bad_up
        else [1.0 - g for g in _RATE_DROP_GRID if 1.0 - g < theta0]
    )
    log_ratio = [math.log(t / theta0) for t in grid]
    rows: list[tuple[int, float, float, float, float]] = []  # period, k_c, n_c, k_b, n_b
    for i in periods:
        kc, kb = _at(num.canary, i), _at(num.baseline, i)
        nc, nb = _at(den.canary, i) or 0.0, _at(den.baseline, i) or 0.0
        if add_numerator:
            nc += kc or 0.0
            nb += kb or 0.0
        if minus is not None:
            nc -= _at(minus.canary, i) or 0.0
            nb -= _at(minus.baseline, i) or 0.0
        if nc <= 0 or nb <= 0 or kc is None or kb is None:
            continue
        kc, kb = max(0.0, min(kc, nc)), max(0.0, min(kb, nb))
        rows.append((i, kc, nc, kb, nb))
    if not rows:
        return _Result(spec, "inconclusive", f"{spec.id}: no period with data from both versions")
    increments = []
    for _, kc, nc, kb, nb in rows:
        k = kc + kb
        if k <= 0:
            increments.append([0.0] * len(grid))
            continue
        r = nc / nb
        base = theta0 * r + 1.0
        # the conditional law of the canary's share is hypergeometric, narrower than the
        # binomial by 1 - k/N: scale the evidence accordingly (quasi-likelihood)
        scale = 1.0 / max(0.05, 1.0 - k / (nc + nb))
        increments.append(
            [scale * (kc * lr + k * math.log(base / (t * r + 1.0))) for t, lr in zip(grid, log_ratio, strict=True)]
        )
    # a weighted union bound over the alternatives: when the baseline had no event at all in
    # the run, the largest relative risk (the canary failing where the baseline does not: a
    # new failure mode) gets 30% of the false-alarm budget, so a few events against none are
    # tested nearly exactly (10 against 0 at equal traffic: p 0.001 in a fixed-size test);
    # otherwise every alternative has the same share
    penalties = [penalty[r[0]] for r in rows]
    evidence, _, start, peak = robust_cusum_peak(increments, penalties)
    if bad_up and len(grid) > 1:
        weights = [0.7 / (len(grid) - 1)] * (len(grid) - 1) + [0.3]
        offsets = [math.log(1.0 / w) - math.log(_ALTERNATIVES) for w in weights]
        new_mode = robust_cusum_peak(increments, penalties, offsets=offsets)
        no_baseline_event = sum(r[3] for r in rows[new_mode[2] : new_mode[3] + 1]) == 0
        if new_mode[0] > evidence and new_mode[1] == len(grid) - 1 and no_baseline_event:
            evidence, _, start, peak = new_mode
    tot = [sum(row[j] for row in rows) for j in (1, 2, 3, 4)]
    rate_c, rate_b = tot[0] / tot[1], tot[2] / tot[3]
    what = (
        f"{spec.id}: canary {_pct(rate_c)} ({tot[0]:g}/{tot[1]:g}) vs baseline {_pct(rate_b)} ({tot[2]:g}/{tot[3]:g})"
    )
    if evidence >= threshold:
        run = rows[start : peak + 1]
        kc_w, nc_w = sum(r[1] for r in run), sum(r[2] for r in run)
        kb_w, nb_w = sum(r[3] for r in run), sum(r[4] for r in run)
        wc, wb = kc_w / nc_w, kb_w / nb_w
        diff = wc - wb if bad_up else wb - wc
        if diff >= settings.min_effect.rate_absolute:
            effect: float | None = (wc / wb - 1.0) if wb > 0 else math.inf
            since = rows[start][0]
            change = f"{effect:+.0%}" if effect is not None and math.isfinite(effect) else "from none"
            return _Result(
                spec,
                "fail",
                f"{spec.id}: canary {_pct(wc)} ({kc_w:g}/{nc_w:g}) vs baseline {_pct(wb)} ({kb_w:g}/{nb_w:g})"
                f" since period {since}, {change}",
                evidence=evidence,
                effect=effect,
                baseline_value=wb,
                canary_value=wc,
                confidence=_confidence_of(evidence),
                at=rows[peak][0],
            )
    effect = (rate_c / rate_b - 1.0) if rate_b > 0 else (0.0 if rate_c == 0 else None)
    # healthy needs a bound: the canary's rate is not much worse than the baseline's
    z = norm_ppf(settings.healthy_confidence)
    lo, hi = rate_bounds(tot[0], tot[1], z)
    margin = max(settings.healthy_margin_absolute, settings.healthy_margin_relative * rate_b)
    ok = (hi - rate_b <= margin) if bad_up else (rate_b - lo <= margin)
    if ok:
        return _Result(
            spec,
            "pass",
            f"{what}: not worse",
            evidence=evidence,
            effect=effect,
            baseline_value=rate_b,
            canary_value=rate_c,
            confidence=settings.healthy_confidence,
        )
    return _Result(
        spec,
        "inconclusive",
        f"{what}: too few canary events to bound it",
        evidence=evidence,
        effect=effect,
        baseline_value=rate_b,
        canary_value=rate_c,
    )


def _latency_spread(window: CanaryWindow, spec: MetricSpec, counts: MetricWindow | None) -> float | None:
    """The spread (lognormal sigma) of the duration behind a percentile, from two percentiles
    of the same metric in the same periods (the baseline's first, else the canary's).

    log(p_hi / p_lo) = sigma (z_hi - z_lo) for a lognormal; the sample upper percentile of
    few draws sits low, which is corrected for. Shared slowdowns scale both percentiles
    and cancel out.
    """
    q = percentile_of_stat(spec.stat)
    if q is None:
        return None
    sibling = None
    for m in window.metrics:
        if m.spec.id == spec.id or m.spec.name != spec.name or m.spec.namespace != spec.namespace:
            continue
        q2 = percentile_of_stat(m.spec.stat)
        if q2 is not None and abs(q2 - q) > 0.2:
            sibling = (q2, m)
            break
    if sibling is None:
        return None
    own = next(m for m in window.metrics if m.spec.id == spec.id)
    (q_lo, lo_m), (q_hi, hi_m) = sorted([(q, own), (sibling[0], sibling[1])], key=lambda x: x[0])
    gap = norm_ppf(q_hi) - norm_ppf(q_lo)
    tail = min(q_hi, 1.0 - q_hi)
    for side in ("baseline", "canary"):
        lo_vals, hi_vals = getattr(lo_m, side), getattr(hi_m, side)
        n_vals = getattr(counts, side) if counts is not None else None
        spreads = []
        for i in range(min(len(lo_vals), len(hi_vals))):
            lo, hi = lo_vals[i], hi_vals[i]
            if lo is None or hi is None or lo <= 0 or hi < lo:
                continue
            n = _at(n_vals, i) if n_vals is not None else None
            if n_vals is not None and (n is None or n * tail < 1.0):
                continue
            correction = 1.0 - (0.2 / (n * tail) if n else 0.0) / gap
            spreads.append(math.log(hi / lo) / gap / correction)
        if spreads:
            return median(spreads)
    return None


def _shift_increments(
    rows: list[tuple[int, float, float]],  # period, difference (bad direction +), noise variance
    delta0: float,
    grid: list[float],
    shape: set[int],
) -> list[list[float]]:
    """Gaussian log-likelihood ratios per period of each shift in ``grid`` against ``delta0``.

    Periods in ``shape`` (just after a traffic shift) are told apart by shape: a cold
    start decays, a regression persists. Their evidence counts only as far as the
    first period after them confirms it (nothing until that period is seen).
    """
    increments = [[(delta - delta0) * (d - 0.5 * (delta + delta0)) / v for delta in grid] for _, d, v in rows]
    confirm: list[float] | None = None
    for r in range(len(rows) - 1, -1, -1):
        if rows[r][0] not in shape:
            confirm = increments[r]
            continue
        increments[r] = [
            min(inc, confirm[j]) if confirm is not None else min(inc, 0.0) for j, inc in enumerate(increments[r])
        ]
    return increments


def _centred(pairs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Steps less their median: a steady trend (a creeping regression) is no noise."""
    if len(pairs) < 3:
        return pairs
    mid = median([d for d, _ in pairs])
    return [(d - mid, s) for d, s in pairs]


def _robust_var(pairs: list[tuple[float, float]]) -> float | None:
    """Variance beyond sampling noise of steps, from (step, its sampling variance) pairs, robustly:
    the median squared (centred) step over its chi-square median, less the typical sampling part."""
    if len(pairs) < 2:
        return None
    pairs = _centred(pairs)
    return max(0.0, median([d * d for d, _ in pairs]) / 0.4549 - median([s for _, s in pairs]))


def _spike_var(rows: list[tuple[int, float, float]]) -> float:
    """Variance of one-period spikes beyond sampling noise, from each period's departure from the
    mean of its two neighbours: a spike departs by its whole size, a trend (a creeping
    regression) not at all, a level shift by half its size twice (the two largest are left
    out). Unlike a median this keeps rare spikes in the noise, so a version that spikes now
    and then is not read as a regression when it does."""
    if len(rows) < 5:
        return 0.0
    excess = []
    for j in range(1, len(rows) - 1):
        r = rows[j][1] - 0.5 * (rows[j - 1][1] + rows[j + 1][1])
        excess.append(r * r - rows[j][2] - 0.25 * (rows[j - 1][2] + rows[j + 1][2]))
    kept = sorted(excess)[:-2]
    return max(0.0, sum(kept) / len(kept) / 1.5)


def _between_period_variance(
    rows: list[tuple[int, float, float]],  # period, paired difference, its sampling variance
    baseline: list[tuple[float, float]],  # the baseline's own log values and sampling variances, every period
    shape: set[int],
    settings: JudgeSettings,
) -> float:
    """Long-run variance of the paired difference beyond sampling noise, from the period-to-period
    steps of both versions' own wobble (each step of canary minus baseline is the canary's own
    step less the baseline's: what hits both versions cancels, a regression moves it once and
    the largest step is left out), with a prior from the sampling noise alone.

    Versions wobble on their own with some memory (minute-to-minute changes that revert
    over a few minutes): the lag-1 and lag-2 steps give the memory rho, and a sum of L
    periods varies like L tau^2 (1 + rho) / (1 - rho), which is what the CUSUM adds up.
    """
    steady = [r for r in rows if r[0] not in shape]
    lag1 = [(steady[j + 1][1] - steady[j][1], steady[j][2] + steady[j + 1][2]) for j in range(len(steady) - 1)]
    lag2 = [(steady[j + 2][1] - steady[j][1], steady[j][2] + steady[j + 2][2]) for j in range(len(steady) - 2)]
    # the baseline has no cold start: its own steps tell from the first periods on (a
    # difference of two versions wobbles like two of them: sqrt(2) of one)
    own = _centred(
        [
            (math.sqrt(2.0) * (baseline[j + 1][0] - baseline[j][0]), 2.0 * (baseline[j][1] + baseline[j + 1][1]))
            for j in range(len(baseline) - 1)
        ]
    )
    lag1 = _centred(lag1)
    prior = 2.0 * settings.latency_noise_floor**2
    prior_weight = 2.0
    v1 = _robust_var(lag1 + own)
    if v1 is None:
        return prior
    # memory: at least a prior 0.5 (a short series cannot tell much less from much more,
    # and too little would make a slow wander look like a shift), more when the data shows it
    rho = 0.5
    v2 = _robust_var(lag2)
    if v2 is not None and v1 > 0 and len(lag2) >= 8:
        rho = max(rho, min(0.7, v2 / v1 - 1.0))
    tau2 = v1 / (2.0 * (1.0 - rho))
    spikes = max(0.0, _spike_var(steady) - tau2)  # one-period spikes have no memory
    long_run = tau2 * (1.0 + rho) / (1.0 - rho) + spikes
    m = float(len(lag1) + len(own)) / 2.0
    # the prior fades fast as the data's own steps come in (it speaks for the first periods
    # only); an estimate from few steps is itself uncertain: widen it as a Student t would
    # (few degrees of freedom, heavier tails), less and less as the periods add up
    fading = (prior_weight / (prior_weight + m)) ** 2
    return (fading * prior + m * long_run / (prior_weight + m)) * (1.0 + 3.0 / (prior_weight + m))


def _sibling_percentile(window: CanaryWindow, spec: MetricSpec) -> MetricSpec | None:
    """A lower percentile of the same metric (p50 for a p99): what a p99 falls back to."""
    q = percentile_of_stat(spec.stat)
    best = None
    for m in window.metrics:
        q2 = percentile_of_stat(m.spec.stat)
        if m.spec.id == spec.id or m.spec.name != spec.name or m.spec.namespace != spec.namespace or q2 is None:
            continue
        if q is not None and q2 < q and (best is None or q2 > (percentile_of_stat(best.stat) or 0.0)):
            best = m.spec
    return best


def _latency_test(
    window: CanaryWindow,
    mw: MetricWindow,
    counts: MetricWindow | None,
    periods: list[int],
    shape: set[int],
    settings: JudgeSettings,
    threshold: float,
    penalty: list[float],
) -> _Result:
    """Paired log differences per period, noise = sampling noise of the statistic at that traffic
    plus each version's own between-period wobble estimated from the data."""
    spec = mw.spec
    sign = 1.0 if spec.direction == Direction.INCREASE_IS_BAD else -1.0
    q = percentile_of_stat(spec.stat)
    spread = _latency_spread(window, spec, counts)
    sigma = spread if spread is not None else 0.6  # a wide prior spread when no sibling percentile tells
    k = quantile_noise_factor(q) if q is not None else 1.0
    tail = min(q, 1.0 - q) if q is not None else 0.5
    min_n = float(settings.latency_min_samples)
    if tail < 0.25:
        min_n = max(min_n, 1.0 / tail)
    rows_raw: list[tuple[int, float, float, float, float, float, float]] = []  # i, yc, yb, sc, sb, c, b
    for i in periods:
        c, b = _at(mw.canary, i), _at(mw.baseline, i)
        if c is None or b is None or c <= 0 or b <= 0:
            continue
        yc, yb, sc, sb = math.log(c), math.log(b), 0.0, 0.0
        if counts is not None:
            nc, nb = _at(counts.canary, i) or 0.0, _at(counts.baseline, i) or 0.0
            if nc < min_n or nb < min_n:
                continue
            if q is not None:
                yc -= quantile_small_sample_bias(q, nc, sigma)
                yb -= quantile_small_sample_bias(q, nb, sigma)
            sc, sb = (k * sigma) ** 2 / nc, (k * sigma) ** 2 / nb
        rows_raw.append((i, yc, yb, sc, sb, c, b))
    if not rows_raw:
        sibling = _sibling_percentile(window, spec) if q is not None and tail < 0.25 else None
        if sibling is not None:
            return _Result(
                spec,
                "inconclusive",
                f"{spec.id}: too few invocations per period for a {spec.stat}; judged through {sibling.id}",
                blocks_healthy=False,
            )
        return _Result(spec, "inconclusive", f"{spec.id}: no period with data from both versions yet")
    paired = [(r[0], sign * (r[1] - r[2]), r[3] + r[4]) for r in rows_raw]
    between = _between_period_variance(paired, [(r[2], r[4]) for r in rows_raw], shape, settings)
    rows = [(i, d, s + between) for i, d, s in paired]
    delta0 = math.log1p(settings.min_effect.latency_relative)
    grid = [math.log1p(g) for g in _LATENCY_GRID if math.log1p(g) > delta0]
    increments = _shift_increments(rows, delta0, grid, shape)
    evidence, _, start, peak = robust_cusum_peak(increments, [penalty[r[0]] for r in rows], second_opinion=True)
    c_med = median([r[5] for r in rows_raw])
    b_med = median([r[6] for r in rows_raw])
    if evidence >= threshold:
        run = rows[start : peak + 1]
        wsum = sum(1.0 / v for _, _, v in run)
        shift = sign * sum(d / v for _, d, v in run) / wsum
        c_run = median([r[5] for r in rows_raw[start : peak + 1]])
        b_run = median([r[6] for r in rows_raw[start : peak + 1]])
        return _Result(
            spec,
            "fail",
            f"{spec.id}: canary {c_run:.4g} vs baseline {b_run:.4g} {spec.unit or ''}".rstrip()
            + f" since period {rows[start][0]}, {math.expm1(sign * shift):+.0%}",
            evidence=evidence,
            effect=math.expm1(sign * shift),
            baseline_value=b_run,
            canary_value=c_run,
            confidence=_confidence_of(evidence),
            at=rows[peak][0],
        )
    steady = [r for r in rows if r[0] not in shape] or rows
    wsum = sum(1.0 / v for _, _, v in steady)
    mean = sum(d / v for _, d, v in steady) / wsum
    se = math.sqrt(1.0 / wsum)
    upper = mean + norm_ppf(settings.healthy_confidence) * se
    what = f"{spec.id}: canary {c_med:.4g} vs baseline {b_med:.4g} {spec.unit or ''}".rstrip()
    effect = math.expm1(sign * mean)
    if upper <= math.log1p(settings.latency_healthy_margin):
        return _Result(
            spec,
            "pass",
            f"{what} (median of {len(rows)} periods): not worse",
            evidence=evidence,
            effect=effect,
            baseline_value=b_med,
            canary_value=c_med,
            confidence=settings.healthy_confidence,
        )
    return _Result(
        spec,
        "inconclusive",
        f"{what}: too noisy to bound yet",
        evidence=evidence,
        effect=effect,
        baseline_value=b_med,
        canary_value=c_med,
    )


def _gauge_test(
    mw: MetricWindow,
    periods: list[int],
    shape: set[int],
    settings: JudgeSettings,
    threshold: float,
    penalty: list[float],
) -> _Result:
    spec = mw.spec
    sign = 1.0 if spec.direction == Direction.INCREASE_IS_BAD else -1.0
    pairs = [
        (i, c, b) for i in periods if (c := _at(mw.canary, i)) is not None and (b := _at(mw.baseline, i)) is not None
    ]
    if len(pairs) < 4:
        return _Result(spec, "inconclusive", f"{spec.id}: {len(pairs)} periods, too few to judge", blocks_healthy=False)
    level = median([abs(b) for _, _, b in pairs])
    diffs = [sign * (c - b) for _, c, b in pairs]
    steps = [diffs[j + 1] - diffs[j] for j in range(len(diffs) - 1)]
    noise = max(mad_sigma(steps) / math.sqrt(2.0), 0.01 * level, 1e-9)
    delta0 = max(settings.min_effect.gauge_relative * level, settings.min_effect.gauge_absolute)
    grid = [delta0 + g * noise for g in _GAUGE_GRID]
    rows = [(i, d, noise**2) for (i, _, _), d in zip(pairs, diffs, strict=True)]
    increments = _shift_increments(rows, delta0, grid, shape)
    evidence, _, start, peak = robust_cusum_peak(increments, [penalty[r[0]] for r in rows], second_opinion=True)
    c_med, b_med = median([c for _, c, _ in pairs]), median([b for _, _, b in pairs])
    effect = (c_med / b_med - 1.0) if b_med else None
    what = f"{spec.id}: canary {c_med:.4g} vs baseline {b_med:.4g}"
    if evidence >= threshold:
        return _Result(
            spec,
            "fail",
            f"{what} since period {rows[start][0]}",
            evidence=evidence,
            effect=effect,
            baseline_value=b_med,
            canary_value=c_med,
            confidence=_confidence_of(evidence),
            at=rows[peak][0],
        )
    return _Result(
        spec,
        "pass",
        f"{what}: not worse",
        evidence=evidence,
        effect=effect,
        baseline_value=b_med,
        canary_value=c_med,
        confidence=settings.healthy_confidence,
    )


# --------------------------------------------------------------------------- missing evidence


def _ranges(periods: list[int]) -> str:
    """[3, 4, 5, 9] -> '3-5, 9'."""
    parts: list[str] = []
    start = prev = None
    for p in sorted(periods):
        if start is None:
            start = prev = p
        elif p == (prev or 0) + 1:
            prev = p
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = p
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(parts)


def _normalised(mw: MetricWindow, n: int) -> MetricWindow:
    """Values as the judge reads them: a reported gap is unknown (None) even where the metric
    has a fill value; elsewhere a period without datapoint takes the metric's fill value."""
    gap = {(g.version, p) for g in mw.gaps for p in g.periods}
    fill = mw.spec.fill_missing
    if not gap and fill is None:
        return mw
    sides = {}
    for side in ("baseline", "canary"):
        values = list(getattr(mw, side)[:n])
        sides[side] = [
            None if (side, i) in gap else (fill if v is None and fill is not None else v) for i, v in enumerate(values)
        ]
    return MetricWindow.model_construct(spec=mw.spec, baseline=sides["baseline"], canary=sides["canary"], gaps=mw.gaps)


def _missing_evidence(mw: MetricWindow, counts: MetricWindow | None, n: int) -> list[str]:
    """Why a guarded metric lacks evidence, per version: periods CloudWatch reported an error for,
    and periods without a datapoint in which the version was invoked (never zero)."""
    problems = []
    for side in ("canary", "baseline"):
        reported: dict[str, list[int]] = {}
        for g in mw.gaps:
            if g.version == side:
                reported.setdefault(g.reason, []).extend(p for p in g.periods if p < n)
        for reason, ps in reported.items():
            if ps:
                problems.append(f"{reason} for the {side}'s periods {_ranges(ps)}")
        if counts is None or counts is mw:
            continue
        values, calls = getattr(mw, side), getattr(counts, side)
        silent = [
            i
            for i in range(n)
            if _at(values, i) is None and (_at(calls, i) or 0.0) > 0 and not any(i in ps for ps in reported.values())
        ]
        if silent:
            problems.append(
                f"no datapoint for the {side} in periods {_ranges(silent)} although it was invoked (missing, not zero)"
            )
    return problems


# --------------------------------------------------------------------------- the judge


def _count_metric(metrics: dict[str, MetricWindow]) -> MetricWindow | None:
    for m in metrics.values():
        if m.spec.kind == MetricKind.COUNT:
            return m
    return metrics.get("invocations")


def _resolved(window: CanaryWindow) -> dict[str, MetricWindow]:
    n = window.periods
    ids = {m.spec.id for m in window.metrics}
    metrics: dict[str, MetricWindow] = {}
    for m in window.metrics:
        spec = resolve_spec(m.spec, ids)
        mw = m if spec is m.spec else MetricWindow.model_construct(
            spec=spec, baseline=m.baseline, canary=m.canary, gaps=m.gaps
        )  # fmt: skip
        metrics[spec.id] = _normalised(mw, n)
    return metrics


def evaluate_metrics(window: CanaryWindow, settings: JudgeSettings, threshold: float | None = None) -> list[_Result]:
    """Every judged metric's test result (the judge's working, exposed for tuning and tests)."""
    n = window.periods
    metrics = _resolved(window)
    counts = _count_metric(metrics)
    if threshold is None:
        threshold = settings.threshold
    penalty = [settings.horizon_penalty(i) for i in range(n)]
    all_periods = list(range(n))
    shape = _shape_periods(n, window, settings.grace_periods)
    rate_periods = [i for i in all_periods if i not in _shape_periods(n, window, settings.rate_grace_periods)]
    optional_ids = {m.id for m in settings.metrics if m.optional}  # configured optional, whatever the window says
    results: list[_Result] = []
    for mw in metrics.values():
        spec = mw.spec
        result: _Result | None = None
        if spec.kind == MetricKind.RATE_COUNT:
            den = metrics.get(spec.relative_to or "")
            if den is None:
                result = _Result(spec, "inconclusive", f"{spec.id}: its count {spec.relative_to!r} is not read")
            else:
                minus = None
                if (
                    spec.direction == Direction.DECREASE_IS_BAD
                    and settings.errors_metric
                    and settings.errors_metric != spec.id
                    and settings.errors_metric in metrics
                ):
                    minus = metrics[settings.errors_metric]
                result = _rate_test(
                    spec, mw, den, minus, spec.id in settings.outside_denominator, rate_periods, settings, threshold,
                    penalty,
                )  # fmt: skip
        elif spec.kind == MetricKind.LATENCY:
            result = _latency_test(window, mw, counts, all_periods, shape, settings, threshold, penalty)
        elif spec.kind != MetricKind.COUNT:
            result = _gauge_test(mw, all_periods, shape, settings, threshold, penalty)
        optional = spec.optional or spec.id in optional_ids
        missing = [] if optional else _missing_evidence(mw, counts, n)
        if missing and (result is None or result.status != "fail"):
            # a guarded metric without evidence keeps the canary from passing, whatever else says
            result = _Result(
                spec,
                "inconclusive",
                f"{spec.id}: missing evidence: " + "; ".join(missing),
                evidence=result.evidence if result else 0.0,
                missing=True,
            )
        if result is None:
            continue
        if optional and result.status == "inconclusive":
            result.blocks_healthy = False
        results.append(result)
    return results


def judge_canary(window: CanaryWindow, settings: JudgeSettings) -> Verdict:
    """Failing, healthy or inconclusive, with a reason per metric, from periods 0..n-1."""
    n = window.periods
    results = evaluate_metrics(window, settings)
    metrics = _resolved(window)
    counts = _count_metric(metrics)
    # evidence: canary traffic
    if counts is not None:
        canary_calls = sum(v for v in counts.canary[:n] if v)
        active = sum(1 for v in counts.canary[:n] if v)
    else:
        canary_calls = math.nan
        active = max((sum(1 for v in m.canary[:n] if v is not None) for m in metrics.values()), default=0)
    traffic = (
        f"{canary_calls:g} canary {counts.spec.id} in {active} of {n} periods"
        if counts is not None
        else f"canary data in {active} of {n} periods"
    )
    reasons = [r.reason() for r in results]
    failing = sorted((r for r in results if r.status == "fail"), key=lambda r: -r.evidence)
    if failing:
        worst = failing[0]
        others = f" (and {', '.join(r.spec.id for r in failing[1:])})" if failing[1:] else ""
        summary = f"canary worse: {worst.message}{others}; {worst.confidence:.2%} sure"
        return Verdict(decision=Decision.FAILING, summary=summary, reasons=reasons, periods=n, judge=JUDGE_NAME)
    waited = ""
    if n > settings.max_inconclusive_periods:
        then = "roll back" if settings.on_no_evidence == "rollback" else "hold for a person"
        waited = f"; no evidence after {n} periods ({then})"
    missing = [r for r in results if r.missing and r.blocks_healthy]
    if missing:
        return Verdict(
            decision=Decision.INCONCLUSIVE,
            summary="; ".join(r.message for r in missing) + waited,
            reasons=reasons,
            periods=n,
            judge=JUDGE_NAME,
        )
    enough = active >= settings.min_periods and (counts is None or canary_calls >= settings.min_canary_invocations)
    if not enough:
        need = (
            f"need {settings.min_canary_invocations} {counts.spec.id} in {settings.min_periods} periods"
            if counts is not None
            else f"need {settings.min_periods} periods"
        )
        return Verdict(
            decision=Decision.INCONCLUSIVE,
            summary=f"not enough evidence: {traffic}, {need}{waited}",
            reasons=reasons,
            periods=n,
            judge=JUDGE_NAME,
        )
    blocking = [r for r in results if r.status == "inconclusive" and r.blocks_healthy]
    if blocking:
        return Verdict(
            decision=Decision.INCONCLUSIVE,
            summary="not sure yet: " + "; ".join(r.message for r in blocking) + waited,
            reasons=reasons,
            periods=n,
            judge=JUDGE_NAME,
        )
    tested = [r.spec.id for r in results if r.status == "pass"]
    return Verdict(
        decision=Decision.HEALTHY,
        summary=f"canary not worse on {', '.join(tested) or 'its traffic'} ({traffic})",
        reasons=reasons,
        periods=n,
        judge=JUDGE_NAME,
    )
