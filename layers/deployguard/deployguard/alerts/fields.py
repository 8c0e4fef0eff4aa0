"""The fields alert rules may use, and how their values are gathered.

A rule naming a field that is neither here nor declared in ``alerting.custom_fields``
is refused when the configuration loads.

Fields are filled from what each metric **is** (:func:`field_sources`), never from its id:
its kind (a request count, a count of events out of it, a latency, a gauge), its
statistic, what it is a rate of, its type (application, infrastructure, business,
security) and direction, and for the few CloudWatch metrics with a fixed meaning
(``Throttles``, ``ConcurrentExecutions``, CPU/memory/disk utilization) its name. The
default Lambda metrics, the ``alb`` preset and custom metrics all go through the same
mapping. Values are read on both sides from the canary window's latest periods that
together hold ``MIN_REQUESTS`` canary requests (at most ``RECENT_PERIODS``), so a reading
is current yet not sampling noise (:func:`fields_from_window`); the assessment stores them under
``details["fields"]`` and the engine evaluates the rules on them. Each metric's own id is
a field too (for ``alerting.custom_fields``).

A field no metric feeds, or whose reading lacks evidence (a rate over fewer than
``MIN_REQUESTS`` requests), is *unknown*, never 0: a rule on it evaluates to unknown and
does not fire (:func:`rule_coverage` says which rules cannot fire for a set of metrics).

The baseline side is put on the canary's footing so that ``... vs baseline`` compares
like with like although the versions take different shares of traffic: rates, latencies
and gauges as they are; counts (errors, failed authentications ...) and business volumes
(revenue, orders) scaled to the canary's number of requests; ``invocations`` and
``throughput`` scaled to the canary's share of traffic (``w / (1 - w)``), so a canary that
receives less traffic than it is routed shows a throughput decrease.

Other values come from the deployment (``environment``, ``elapsed_minutes`` ...), the
assessment (``health_score``, ``decision``, ``failing_metrics`` ...), the explicit
``metric_values`` / ``baseline_values`` given to the engine, and the event (``event``,
``event_severity``) for event-driven evaluation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from deployguard.alerts.expression import Unit
from deployguard.analysis.settings import resolve_spec
from deployguard.analysis.stats import percentile_of_stat
from deployguard.models import (
    Assessment,
    CanaryWindow,
    Deployment,
    DeploymentEvent,
    Direction,
    MetricKind,
    MetricSpec,
    MetricType,
    MetricWindow,
)

BUILTIN_FIELDS: dict[str, Unit] = {
    # deployment
    "environment": Unit.TEXT,
    "service": Unit.TEXT,
    "deployment_status": Unit.TEXT,
    "phase": Unit.TEXT,
    "driver": Unit.TEXT,
    "strategy": Unit.TEXT,
    "target_kind": Unit.TEXT,
    "elapsed_minutes": Unit.NUMBER,
    "duration_ratio": Unit.NUMBER,  # elapsed / expected duration
    # assessment
    "health_score": Unit.SCORE,
    "health_status": Unit.TEXT,
    "decision": Unit.TEXT,
    "canary_weight": Unit.RATIO,
    "failing_metrics": Unit.COUNT,
    # event
    "event": Unit.TEXT,
    "event_severity": Unit.TEXT,
    # application
    "error_rate": Unit.RATIO,
    "errors": Unit.COUNT,
    "invocations": Unit.COUNT,
    "throttles": Unit.COUNT,
    "throttle_rate": Unit.RATIO,
    "timeout_rate": Unit.RATIO,
    "availability": Unit.RATIO,
    "cold_starts": Unit.COUNT,
    "concurrent_executions": Unit.COUNT,
    # performance
    "response_time_p50": Unit.MILLISECONDS,
    "response_time_p90": Unit.MILLISECONDS,
    "response_time_p95": Unit.MILLISECONDS,
    "response_time_p99": Unit.MILLISECONDS,
    "response_time_avg": Unit.MILLISECONDS,
    "throughput": Unit.NUMBER,  # requests per minute
    # infrastructure
    "cpu_utilization": Unit.PERCENT,
    "memory_utilization": Unit.PERCENT,
    "disk_utilization": Unit.PERCENT,
    # business
    "conversion_rate": Unit.RATIO,
    "conversion_rate_drop": Unit.RATIO,
    "revenue_per_minute": Unit.NUMBER,
    "orders_per_minute": Unit.NUMBER,
    # security
    "failed_authentications": Unit.COUNT,
    "failed_authentication_rate": Unit.RATIO,  # failed authentications per request
    "security_violations": Unit.COUNT,
}

_NAMES = list(BUILTIN_FIELDS)
METRIC_FIELDS = frozenset(_NAMES[_NAMES.index("error_rate") :])  # fields only a metric can fill
# fields that never have a baseline: a deployment's, an assessment's or an event's own values, and the drop
# (already against the baseline): a relative change of one ("health_score decrease > 10% vs baseline") never fires
NO_BASELINE = frozenset(_NAMES[: _NAMES.index("error_rate")]) | {"conversion_rate_drop"}

RECENT_PERIODS = 5  # readings look back at most five periods, as the health report's
MIN_REQUESTS = 200.0  # a rate over fewer requests is sampling noise: unknown (the health report's minimum)
MIN_BASELINE_EVENTS = 10.0  # a count compared with fewer baseline events is noise: the baseline is unknown

Values = dict[str, float | str | None]
Scaling = Literal["none", "requests", "share"]
How = Literal["count", "rate", "per_minute", "latency", "gauge", "availability", "drop"]


# --------------------------------------------------------------------------- what a metric is


@dataclass(frozen=True)
class FieldSource:
    """How one field is filled: from which metrics, computed how, and the baseline's footing."""

    field: str
    metrics: tuple[str, ...]
    how: How
    denominator: str | None = None  # the count a rate is of
    scaling: Scaling = "none"
    to_milliseconds: float = 1.0
    rare: bool = False  # a rate of rare events (failed logins): over the periods counts span, not the latest ones

    @property
    def description(self) -> str:
        ids = " + ".join(self.metrics)
        text = {
            "count": f"sum of {ids}",
            "rate": f"{ids} / {self.denominator}",
            "per_minute": f"{ids} per minute",
            "latency": f"median of {ids}" + (" (seconds -> ms)" if self.to_milliseconds != 1.0 else ""),
            "gauge": f"median of {ids}",
            "availability": f"1 - ({ids}) / {self.denominator}",
            "drop": f"fall of {ids} / {self.denominator} below the baseline's",
        }[self.how]
        return text


def _words(spec: MetricSpec) -> str:
    return f"{spec.id} {spec.name}".lower()


def _matches(spec: MetricSpec, pattern: str) -> bool:
    return re.search(pattern, _words(spec)) is not None


def _requests_metric(specs: Sequence[MetricSpec]) -> MetricSpec | None:
    """The count of requests: the count other metrics are rates of, else the first application count."""
    counts = {s.id: s for s in specs if s.kind == MetricKind.COUNT}
    for spec in specs:
        if spec.kind == MetricKind.RATE_COUNT and spec.relative_to in counts:
            return counts[spec.relative_to]
    return next((s for s in counts.values() if s.metric_type == MetricType.APPLICATION), None)


def _time_factor(spec: MetricSpec) -> float:
    unit = (spec.unit or "").lower()
    return {"seconds": 1000.0, "microseconds": 0.001}.get(unit, 1.0)


def field_sources(metrics: Iterable[MetricSpec]) -> dict[str, FieldSource]:
    """Which fields a service's metrics feed, decided by what each metric is."""
    specs = list(metrics)
    ids = {s.id for s in specs}
    specs = [resolve_spec(s, ids) for s in specs]
    out: dict[str, FieldSource] = {}
    requests = _requests_metric(specs)
    req = requests.id if requests else None
    # id -> role of every count of events out of the requests
    errors: list[str] = []
    for spec in specs:
        if spec.kind == MetricKind.RATE_COUNT:
            of = spec.relative_to
            bad_up = spec.direction == Direction.INCREASE_IS_BAD
            if spec.metric_type == MetricType.SECURITY or _matches(spec, r"auth|security|violation|intrusion"):
                name = "failed_authentications" if _matches(spec, r"auth|login") else "security_violations"
                out.setdefault(name, FieldSource(name, (spec.id,), "count", scaling="requests"))
                if name == "failed_authentications" and of is not None:
                    rate = "failed_authentication_rate"
                    out.setdefault(rate, FieldSource(rate, (spec.id,), "rate", of, rare=True))
            elif not bad_up:  # conversions, successful checkouts: a rate that should not fall
                if spec.metric_type == MetricType.BUSINESS and of is not None:
                    out.setdefault("conversion_rate", FieldSource("conversion_rate", (spec.id,), "rate", of))
                    out.setdefault("conversion_rate_drop", FieldSource("conversion_rate_drop", (spec.id,), "drop", of))
            elif spec.name.lower() == "throttles" or (
                spec.metric_type == MetricType.INFRASTRUCTURE and _matches(spec, r"throttl")
            ):
                if of == req and of is not None:
                    out.setdefault("throttles", FieldSource("throttles", (spec.id,), "count", scaling="requests"))
                    out.setdefault("throttle_rate", FieldSource("throttle_rate", (spec.id,), "rate", of))
            elif _matches(spec, r"timeout|timed_?out"):
                if of == req and of is not None:
                    out.setdefault("timeout_rate", FieldSource("timeout_rate", (spec.id,), "rate", of))
            elif spec.metric_type in (MetricType.APPLICATION, MetricType.PERFORMANCE) and of == req and of:
                errors.append(spec.id)  # failed requests (Lambda Errors, target 5XX)
        elif spec.kind == MetricKind.LATENCY:
            stat = spec.stat.strip()
            q = percentile_of_stat(stat)
            latency: str | None = f"response_time_p{round(q * 100)}" if q is not None else None
            if stat.lower() == "average":
                latency = "response_time_avg"
            if latency in BUILTIN_FIELDS:
                out.setdefault(latency, FieldSource(latency, (spec.id,), "latency", to_milliseconds=_time_factor(spec)))
        elif spec.kind == MetricKind.GAUGE or (spec.kind == MetricKind.COUNT and spec is not requests):
            _gauge_or_volume(spec, out)
    if req is not None:
        out["invocations"] = FieldSource("invocations", (req,), "count", scaling="share")
        out["throughput"] = FieldSource("throughput", (req,), "per_minute", scaling="share")
    if errors and req is not None:
        out["errors"] = FieldSource("errors", tuple(errors), "count", scaling="requests")
        out["error_rate"] = FieldSource("error_rate", tuple(errors), "rate", req)
        out["availability"] = FieldSource("availability", tuple(errors), "availability", req)
    return out


_UTILIZATION = (("cpu_utilization", r"cpu"), ("memory_utilization", r"mem"), ("disk_utilization", r"disk"))


def _gauge_or_volume(spec: MetricSpec, out: dict[str, FieldSource]) -> None:
    volume = spec.kind == MetricKind.COUNT or spec.stat.lower() == "sum"
    per: Scaling = "requests"
    if spec.metric_type == MetricType.SECURITY or _matches(spec, r"auth_?fail|failed_?auth|security|violation"):
        name = "failed_authentications" if _matches(spec, r"auth|login") else "security_violations"
        out.setdefault(name, FieldSource(name, (spec.id,), "count" if volume else "gauge", scaling="requests"))
    elif spec.metric_type == MetricType.BUSINESS and _matches(spec, r"revenue|sales|gmv"):
        out.setdefault("revenue_per_minute", FieldSource("revenue_per_minute", (spec.id,), "per_minute", scaling=per))
    elif spec.metric_type == MetricType.BUSINESS and _matches(spec, r"order|checkout|purchase"):
        out.setdefault("orders_per_minute", FieldSource("orders_per_minute", (spec.id,), "per_minute", scaling=per))
    elif spec.name == "ConcurrentExecutions":
        out.setdefault("concurrent_executions", FieldSource("concurrent_executions", (spec.id,), "gauge"))
    elif _matches(spec, r"cold_?start|init_?duration"):
        out.setdefault("cold_starts", FieldSource("cold_starts", (spec.id,), "count", scaling="requests"))
    else:
        for name, pattern in _UTILIZATION:
            if _matches(spec, pattern) and not volume:
                out.setdefault(name, FieldSource(name, (spec.id,), "gauge"))
                return


# --------------------------------------------------------------------------- readings of a window


@dataclass
class FieldReadings:
    """The canary's and the (canary-footed) baseline's field values of one window."""

    canary: dict[str, float | None] = field(default_factory=dict)
    baseline: dict[str, float | None] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def as_details(self) -> dict[str, Any]:
        return {"canary": self.canary, "baseline": self.baseline, "sources": self.sources}


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


class _Window:
    """The periods the readings are of: the latest ones that together hold ``min_requests`` canary
    requests (at most ``recent_periods``; the last ``recent_periods`` without a request count)."""

    def __init__(self, window: CanaryWindow, requests: str | None, recent_periods: int, min_requests: float) -> None:
        self.by_id: dict[str, MetricWindow] = {m.spec.id: m for m in window.metrics}
        self.end = window.periods
        self.start = self.count_start = max(0, self.end - recent_periods)
        if requests is not None:
            seen = 0.0
            for i in range(self.end - 1, self.start - 1, -1):
                seen += self.by_id[requests].canary[i] or 0.0
                if seen >= min_requests:
                    self.start = i
                    break
        self.interval_minutes = window.interval_seconds / 60.0
        # traffic shares are known only since the last shift (its own period was split between weights)
        since = window.periods_since_shift
        self.share_start = self.start if since is None else max(self.start, self.end - since + 1)

    def values(self, metric_id: str, side: str, start: int | None = None) -> list[float]:
        metric = self.by_id.get(metric_id)
        if metric is None:
            return []
        series = metric.canary if side == "canary" else metric.baseline
        return [v for v in series[self.start if start is None else start : self.end] if v is not None]

    def total(self, metric_ids: Iterable[str], side: str, start: int | None = None) -> float | None:
        got = [v for metric_id in metric_ids for v in self.values(metric_id, side, start)]
        return sum(got) if got else None


def fields_from_window(
    window: CanaryWindow, recent_periods: int = RECENT_PERIODS, min_requests: float = MIN_REQUESTS
) -> FieldReadings:
    """The fields of the canary and the (canary-footed) baseline over the window's latest periods."""
    sources = field_sources(m.spec for m in window.metrics)
    requests = sources.get("invocations")
    request_ids = requests.metrics if requests else ()
    data = _Window(window, request_ids[0] if request_ids else None, recent_periods, min_requests)
    out = FieldReadings(sources={name: source.description for name, source in sources.items()})
    weight = window.canary_weight
    share = weight / (1.0 - weight) if 0.0 < weight < 1.0 and data.share_start < data.end else None

    def rate(source: FieldSource, side: str) -> float | None:
        start = data.count_start if source.rare else None  # rare events: over the periods their counts span
        den = data.total([source.denominator or ""], side, start)
        num = data.total(source.metrics, side, start)
        return None if num is None or den is None or den < min_requests else num / den

    def requests_ratio(start: int) -> float | None:
        n_c, n_b = data.total(request_ids, "canary", start), data.total(request_ids, "baseline", start)
        return n_c / n_b if n_c is not None and n_b else None

    def volume(metric_ids: Sequence[str], side: str, scaling: Scaling, per_minute: bool) -> float | None:
        # volumes per minute are current (the latest periods); counts of rare events (failed
        # logins) span all recent periods, which makes them less noisy
        start = data.share_start if scaling == "share" else (data.start if per_minute else data.count_start)
        total = data.total(metric_ids, side, start)
        if total is None or data.end <= start:
            return None
        if side == "baseline" and scaling != "none":
            if scaling == "requests" and not per_minute and total < MIN_BASELINE_EVENTS:
                return None  # "3 against 1 event" is no increase of 200%: too few to compare with
            factor = share if scaling == "share" else requests_ratio(start)
            if factor is None:
                return None
            total *= factor
        return total / ((data.end - start) * data.interval_minutes) if per_minute else total

    for metric in window.metrics:  # each metric's own id, for custom fields
        spec = metric.spec
        for side, target in (("canary", out.canary), ("baseline", out.baseline)):
            if spec.kind in (MetricKind.COUNT, MetricKind.RATE_COUNT):
                scaling: Scaling = "share" if spec.id in request_ids else "requests"
                target[spec.id] = volume([spec.id], side, scaling, per_minute=False)
            else:
                target[spec.id] = _median(data.values(spec.id, side))
    for name, source in sources.items():
        for side, target in (("canary", out.canary), ("baseline", out.baseline)):
            value: float | None
            if source.how in ("count", "per_minute"):
                value = volume(source.metrics, side, source.scaling, per_minute=source.how == "per_minute")
            elif source.how == "rate":
                value = rate(source, side)
            elif source.how == "availability":
                failed = rate(source, side)
                value = None if failed is None else 1.0 - failed
            elif source.how == "drop":
                now, before = rate(source, "canary"), rate(source, "baseline")
                value = None if side == "baseline" or now is None or not before else max(0.0, (before - now) / before)
            else:  # latency, gauge: the median period
                median = _median(data.values(source.metrics[0], side))
                value = None if median is None else median * source.to_milliseconds
            target[name] = value
    return out


# --------------------------------------------------------------------------- coverage


@dataclass(frozen=True)
class RuleCoverage:
    rule: str
    status: Literal["ok", "partial", "cannot_fire"]
    unknown_fields: tuple[str, ...]

    @property
    def message(self) -> str:
        if self.status == "ok":
            return f"{self.rule}: every field it reads is filled"
        missing = ", ".join(self.unknown_fields)
        what = "never fires" if self.status == "cannot_fire" else "parts of it stay unknown"
        return f"{self.rule}: {what}: no metric feeds {missing}"


def rule_coverage(
    rules: Iterable[Any], metrics: Iterable[MetricSpec], custom: Iterable[str] = ()
) -> list[RuleCoverage]:
    """Which rules can fire on a service's metrics: a rule whose every field is a metric field no metric
    feeds cannot fire (its comparisons stay unknown). ``rules`` are AlertRules; ``custom`` the
    custom fields (filled by the metric of the same id)."""
    specs = list(metrics)
    fed = set(field_sources(specs)) | {s.id for s in specs}
    metric_only = METRIC_FIELDS | set(custom)
    out = []
    for rule in rules:
        used = set(rule.compiled.fields)
        unknown = tuple(sorted(f for f in used if f in metric_only and f not in fed))
        status: Literal["ok", "partial", "cannot_fire"] = (
            "ok" if not unknown else ("cannot_fire" if set(unknown) == used else "partial")
        )
        out.append(RuleCoverage(rule.name, status, unknown))
    return out


# --------------------------------------------------------------------------- the evaluation context


@dataclass
class EvaluationContext:
    """Everything one evaluation of the rules sees."""

    values: Values = field(default_factory=dict)
    baseline: dict[str, float | None] = field(default_factory=dict)
    deployment: Deployment | None = None
    assessment: Assessment | None = None
    event: DeploymentEvent | None = None

    @property
    def environment(self) -> str | None:
        value = self.values.get("environment")
        return value if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if value == value else None
    return None


def _merge_numbers(target: dict[str, Any], source: Any) -> None:
    if isinstance(source, Mapping):
        for key, value in source.items():
            number = _number(value)
            if isinstance(key, str) and number is not None:
                target[key] = number


def build_context(
    *,
    now: datetime,
    deployment: Deployment | None = None,
    assessment: Assessment | None = None,
    event: DeploymentEvent | None = None,
    metric_values: Mapping[str, float | None] | None = None,
    baseline_values: Mapping[str, float | None] | None = None,
) -> EvaluationContext:
    values: Values = {}
    baseline: dict[str, float | None] = {}
    if deployment is not None:
        values.update(
            {
                "environment": deployment.environment,
                "service": deployment.service,
                "deployment_status": deployment.status.value,
                "phase": deployment.phase.value,
                "driver": deployment.driver,
                "strategy": deployment.strategy.value,
                "target_kind": deployment.target.kind,
            }
        )
        end = deployment.ended_at or now
        elapsed = max(0.0, (end - deployment.started_at).total_seconds())
        values["elapsed_minutes"] = elapsed / 60.0
        if deployment.expected_duration_seconds:
            values["duration_ratio"] = elapsed / deployment.expected_duration_seconds
    if assessment is not None:
        values["health_score"] = assessment.health_score
        values["health_status"] = assessment.health_status.value
        values["decision"] = assessment.verdict.decision.value
        values["canary_weight"] = assessment.canary_weight
        values["failing_metrics"] = float(len(assessment.verdict.failing_reasons))
        readings = assessment.details.get("fields")
        if isinstance(readings, Mapping):  # filled from what each metric is (fields_from_window)
            _merge_numbers(values, readings.get("canary"))
            _merge_numbers(baseline, readings.get("baseline"))
    _merge_numbers(values, metric_values)
    _merge_numbers(baseline, baseline_values)
    if event is not None:
        values["event"] = event.event_type.value
        values["event_severity"] = event.severity.value
        values.setdefault("environment", event.environment)
        values.setdefault("service", event.service)
    else:  # "no event" is known: event rules are false, not unknown, when an assessment is evaluated
        values["event"] = ""
        values["event_severity"] = ""
    current, base = values.get("conversion_rate"), baseline.get("conversion_rate")
    if "conversion_rate_drop" not in values and isinstance(current, float) and base:
        values["conversion_rate_drop"] = max(0.0, (base - current) / base)
    return EvaluationContext(
        values=values, baseline=baseline, deployment=deployment, assessment=assessment, event=event
    )
