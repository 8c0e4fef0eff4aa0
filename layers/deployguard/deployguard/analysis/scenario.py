"""Recorded deployments in the ``deployguard-scenario/1`` format, mapped onto CanaryWindow.

A scenario holds, per metric, the CloudWatch values of the stable version
(``baseline``) and the new one (``canary``), one per period, ``null`` where a version
had no datapoint (a whole series may be ``null`` when its query returned nothing). The
judge reads a metric without datapoint in a period its version was invoked as missing
evidence, never as zero. ``truth`` (what really happened, in benchmark corpora) is ignored.
Malformed input raises ScenarioError naming the file and the field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deployguard.analysis.settings import METRIC_PRESETS, JudgeSettings, resolve_spec, same_metric
from deployguard.analysis.stats import percentile_of_stat
from deployguard.exceptions import ScenarioError
from deployguard.inbound import TooLarge, check_bounds
from deployguard.models import CanaryWindow, DataGap, Direction, MetricKind, MetricSpec, MetricWindow

MAX_SCENARIO_BYTES = 16 * 1024 * 1024
MAX_SCENARIO_VALUES = 2_000_000

FORMAT = "deployguard-scenario/1"


class ScenarioMetric(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=r"^[a-z][a-zA-Z0-9_]*$")
    namespace: str = "AWS/Lambda"
    name: str = Field(min_length=1)
    stat: str = Field(default="Sum", min_length=1)
    unit: str | None = None
    direction: Direction | None = None
    relative_to: str | None = None
    baseline: list[float | None]
    canary: list[float | None]

    @field_validator("baseline", "canary")
    @classmethod
    def _finite(cls, values: list[float | None]) -> list[float | None]:
        for i, v in enumerate(values):
            if v is not None and not math.isfinite(v):
                raise ValueError(f"value {i} is {v}: values must be finite numbers or null")
        return values


class Scenario(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: Literal["deployguard-scenario/1"]
    name: str = Field(min_length=1)
    interval_seconds: int = Field(default=60, gt=0)
    intervals: int = Field(ge=1)
    canary_weight: float = Field(ge=0.0, le=1.0)
    metrics: list[ScenarioMetric] = Field(min_length=1)
    truth: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_series(cls, data: Any) -> Any:
        """A version whose query returned nothing at all may be recorded as ``null``: no value in any period."""
        if isinstance(data, dict) and isinstance(data.get("metrics"), list) and isinstance(data.get("intervals"), int):
            metrics = []
            for m in data["metrics"]:
                if isinstance(m, dict) and any(m.get(side, []) is None for side in ("baseline", "canary")):
                    m = dict(m)
                    for side in ("baseline", "canary"):
                        if side in m and m[side] is None:
                            m[side] = [None] * data["intervals"]
                metrics.append(m)
            data = dict(data) | {"metrics": metrics}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        ids = [m.id for m in self.metrics]
        for i, m in enumerate(self.metrics):
            for side in ("baseline", "canary"):
                got = len(getattr(m, side))
                if got != self.intervals:
                    raise ValueError(f"metrics.{i}.{side}: {got} values for {self.intervals} intervals")
            if ids.count(m.id) > 1:
                raise ValueError(f"metrics.{i}.id: metric id {m.id!r} appears more than once")
            if m.relative_to is not None and m.relative_to not in ids:
                raise ValueError(f"metrics.{i}.relative_to: {m.relative_to!r} is not the id of a metric here")
        return self


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def parse_scenario(document: Any, source: str) -> Scenario:
    if not isinstance(document, dict):
        raise ScenarioError(f"file {source}: a scenario must be a JSON object")
    try:
        check_bounds(document, max_depth=16, max_nodes=MAX_SCENARIO_VALUES)
    except TooLarge as exc:
        raise ScenarioError(f"file {source}: {exc}") from None
    try:
        return Scenario.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = _location(first["loc"])
        msg = str(first["msg"]).removeprefix("Value error, ")
        if ": " in msg and not field:  # model-level checks name their field first
            field, msg = msg.split(": ", 1)
        more = f" ({len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ScenarioError(f"file {source}, field {field or '(top level)'}: {msg}{more}") from exc


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_SCENARIO_BYTES:
            raise ScenarioError(f"file {path}: {size} bytes, at most {MAX_SCENARIO_BYTES} are read")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"file {path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"file {path}: not UTF-8 text (byte {exc.start})") from None
    return parse_scenario_text(text, str(path))


def parse_scenario_text(text: str, source: str) -> Scenario:
    """A scenario from JSON text, bounded; :class:`ScenarioError` names the file and the field."""
    if len(text) > MAX_SCENARIO_BYTES:
        raise ScenarioError(f"file {source}: {len(text)} characters, at most {MAX_SCENARIO_BYTES} are read")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"file {source}: not valid JSON: {exc}") from exc
    except RecursionError:
        raise ScenarioError(f"file {source}: nested too deep") from None
    return parse_scenario(document, source)


def metric_specs_from_scenario(scenario: Scenario, settings: JudgeSettings | None = None) -> list[MetricSpec]:
    """The MetricSpec of every metric of a scenario.

    A metric the settings configure under the same id keeps the configured spec (its
    kind, direction, relative_to); the others are described by the scenario, their
    kind inferred (Invocations a count, Errors/Throttles rates of invocations, a
    percentile a latency, a metric with ``relative_to`` a rate).
    """
    configured = {m.id: m for m in (settings.metrics if settings else [])}
    ids = {m.id for m in scenario.metrics}
    specs = []
    for m in scenario.metrics:
        if m.id in configured:
            specs.append(resolve_spec(configured[m.id], ids))
            continue
        fields: dict[str, Any] = {"id": m.id, "namespace": m.namespace, "name": m.name, "stat": m.stat, "unit": m.unit}
        if m.direction is not None:
            fields["direction"] = m.direction
        if m.relative_to is not None:
            fields["relative_to"] = m.relative_to
        specs.append(resolve_spec(MetricSpec(**fields), ids))
    return specs


NOT_RECORDED = "not in the recording"


def configured_metrics(scenario: Scenario, settings: JudgeSettings | None = None) -> list[MetricSpec]:
    """The metrics a recording is judged as guarding: the settings' metrics when they name them
    (``judge.metrics`` or ``judge.metrics_preset`` given); otherwise the default metric set of each
    namespace the recording reads one of the set's metrics of (``AWS/Lambda``: invocations, errors,
    throttles, duration p50 and p99; ``AWS/ApplicationELB``: the ``alb`` preset), where the percentiles of one latency
    metric count as recorded when any of them is (a recording of a configuration that guards
    only the p99, or only the p50, of Duration). Other namespaces have no default set."""
    if settings is not None and "metrics" in settings.model_fields_set:
        return list(settings.metrics)
    recorded = {(m.namespace, m.name) for m in scenario.metrics}
    out: list[MetricSpec] = []
    for preset in METRIC_PRESETS.values():
        specs = preset()
        if not any((spec.namespace, spec.name) in recorded for spec in specs):
            continue  # not a recording of that kind (a custom metric's namespace may be left to default)
        for spec in specs:
            recorded_percentile = percentile_of_stat(spec.stat) is not None and any(
                (m.namespace, m.name) == (spec.namespace, spec.name) and percentile_of_stat(m.stat) is not None
                for m in scenario.metrics
            )
            if spec.kind != MetricKind.LATENCY or not recorded_percentile:
                out.append(spec)
    return out


def _recorded(spec: MetricSpec, scenario: Scenario) -> bool:
    """Held under its id or its CloudWatch namespace, name and statistic: the judge's rule (same_metric)."""
    return any(same_metric(spec, m) for m in scenario.metrics)


def unrecorded_metrics(scenario: Scenario, settings: JudgeSettings | None = None) -> list[MetricSpec]:
    """The guarded (not ``optional``) metrics of :func:`configured_metrics` the recording does not hold
    at all, under their id or their CloudWatch name and statistic: missing evidence in every period,
    never promoted (``scenario_window`` adds them as such)."""
    ids = {m.id for m in scenario.metrics}
    return [
        resolve_spec(spec, ids | {spec.id})
        for spec in configured_metrics(scenario, settings)
        if not spec.optional and not _recorded(spec, scenario)
    ]


def scenario_window(
    scenario: Scenario, specs: list[MetricSpec] | None = None, unrecorded: list[MetricSpec] | None = None
) -> CanaryWindow:
    """The whole scenario as one CanaryWindow (periods 0..intervals-1, one traffic shift at 0).

    ``unrecorded`` (:func:`unrecorded_metrics`) are added without a value, every period of both
    versions a gap "not in the recording": missing evidence, which keeps the verdict inconclusive."""
    specs = specs or metric_specs_from_scenario(scenario)
    n = scenario.intervals
    absent = [
        MetricWindow(
            spec=spec,
            baseline=[None] * n,
            canary=[None] * n,
            gaps=[
                DataGap(version=side, periods=list(range(n)), reason=NOT_RECORDED) for side in ("baseline", "canary")
            ],
        )
        for spec in unrecorded or []
    ]
    return CanaryWindow(
        interval_seconds=scenario.interval_seconds,
        canary_weight=scenario.canary_weight,
        metrics=[
            MetricWindow(spec=spec, baseline=m.baseline, canary=m.canary)
            for spec, m in zip(specs, scenario.metrics, strict=True)
        ]
        + absent,
    )


def truncate_window(window: CanaryWindow, periods: int) -> CanaryWindow:
    """The window as it was after ``periods`` periods (no re-validation: it was validated whole)."""
    return CanaryWindow.model_construct(
        interval_seconds=window.interval_seconds,
        canary_weight=window.canary_weight,
        periods_since_shift=window.periods_since_shift,
        metrics=[
            MetricWindow.model_construct(
                spec=m.spec, baseline=m.baseline[:periods], canary=m.canary[:periods], gaps=m.gaps
            )
            for m in window.metrics
        ],
    )
