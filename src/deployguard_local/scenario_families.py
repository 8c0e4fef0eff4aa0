"""Scenario families of other shapes than the shared generator's, with their truth explained.

    python -m deployguard_local.scenario_families OUT_DIR [--seed N] [--per-family K]

The shared corpus (``../shared/bench/canarygen.py``) draws 15-30 one-minute periods. A
judge tuned on it alone could fail on other shapes, so these families check it on:

- ``long_healthy_jitter``: a 240-period canary (four hours of one-minute periods), each
  version wobbling on its own with memory, as in production. Truth: promote. A CUSUM
  that looks 240 times must not accumulate false alarms.
- ``five_minute_healthy`` / ``five_minute_latency``: 5-minute periods (300 s), 8-14 of
  them; the second's canary is 1.5-3x slower from a random onset. Truth: promote /
  roll back at or after the onset.
- ``short_healthy`` / ``short_error_step``: canaries of only 5-10 periods; the second's
  canary adds 3-20% errors from period 1-3. Truth: promote / roll back.
- ``recording_gaps_healthy``: a recording that lost whole minutes (no metric of either
  version, invocations included, in 10% of periods): nothing says the canary failed
  and nothing was invoked-but-unreported. Truth: promote.
- ``recording_lost_errors``: the canary's Errors series is lost (null) for a stretch of
  4-8 periods while its invocations are recorded. Truth: hold (no evidence on errors
  for those periods: never promoted).

Written with numpy (a local tool; the judge itself needs none), in the
``deployguard-scenario/1`` format, ``truth`` in the same shape as the shared corpus.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_METRICS = [
    ("invocations", "Invocations", "Sum", "Count"),
    ("errors", "Errors", "Sum", "Count"),
    ("throttles", "Throttles", "Sum", "Count"),
    ("duration_p50", "Duration", "p50", "Milliseconds"),
    ("duration_p99", "Duration", "p99", "Milliseconds"),
]
_DRAWS = 5_000  # latency draws per version-period (percentiles of more change little)


@dataclass
class Plan:
    """One scenario: traffic, behaviour of each version per period, and the truth."""

    family: str
    expect: str
    periods: int
    interval: int
    per_period: float  # invocations per period, both versions
    weight: float
    error_rate: float
    median_ms: float
    sigma: float
    onset: int | None = None
    canary_error: np.ndarray | None = None
    canary_slowdown: np.ndarray | None = None
    jitter: float = 0.0  # per-period step of each version's own log-latency wobble (AR(1), rho 0.7)
    lost_periods: list[int] = field(default_factory=list)  # whole periods missing from the recording
    lost_canary_errors: list[int] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


def _plan(rng: np.random.Generator, family: str, expect: str, periods: int, interval: int) -> Plan:
    per_minute = float(np.exp(rng.uniform(math.log(300), math.log(8000))))
    return Plan(
        family=family, expect=expect, periods=periods, interval=interval,
        per_period=per_minute * interval / 60.0, weight=float(rng.choice([0.1, 0.2, 0.25])),
        error_rate=float(np.exp(rng.uniform(math.log(0.001), math.log(0.01)))),
        median_ms=float(rng.uniform(20, 300)), sigma=float(rng.uniform(0.3, 0.7)),
    )  # fmt: skip


def long_healthy_jitter(rng: np.random.Generator) -> Plan:
    p = _plan(rng, "long_healthy_jitter", "promote", 240, 60)
    p.jitter = float(rng.uniform(0.02, 0.06))
    return p


def five_minute_healthy(rng: np.random.Generator) -> Plan:
    return _plan(rng, "five_minute_healthy", "promote", int(rng.integers(8, 15)), 300)


def five_minute_latency(rng: np.random.Generator) -> Plan:
    p = _plan(rng, "five_minute_latency", "rollback", int(rng.integers(8, 15)), 300)
    p.onset = int(rng.integers(1, p.periods // 2))
    mult = float(rng.uniform(1.5, 3.0))
    p.canary_slowdown = np.where(np.arange(p.periods) >= p.onset, mult, 1.0)
    p.params = {"latency_multiplier": mult}
    return p


def short_healthy(rng: np.random.Generator) -> Plan:
    return _plan(rng, "short_healthy", "promote", int(rng.integers(5, 11)), 60)


def short_error_step(rng: np.random.Generator) -> Plan:
    p = _plan(rng, "short_error_step", "rollback", int(rng.integers(5, 11)), 60)
    p.onset = int(rng.integers(1, 4))
    add = float(rng.uniform(0.03, 0.2))
    p.canary_error = np.where(np.arange(p.periods) >= p.onset, p.error_rate + add, p.error_rate)
    p.params = {"added_error_rate": add}
    return p


def recording_gaps_healthy(rng: np.random.Generator) -> Plan:
    p = _plan(rng, "recording_gaps_healthy", "promote", int(rng.integers(15, 31)), 60)
    p.lost_periods = sorted(int(i) for i in rng.choice(p.periods, size=max(1, p.periods // 10), replace=False))
    return p


def recording_lost_errors(rng: np.random.Generator) -> Plan:
    p = _plan(rng, "recording_lost_errors", "hold", int(rng.integers(15, 31)), 60)
    start = int(rng.integers(2, p.periods - 8))
    p.lost_canary_errors = list(range(start, start + int(rng.integers(4, 9))))
    return p


FAMILIES: dict[str, Callable[[np.random.Generator], Plan]] = {
    f.__name__: f
    for f in (
        long_healthy_jitter, five_minute_healthy, five_minute_latency, short_healthy, short_error_step,
        recording_gaps_healthy, recording_lost_errors,
    )
}  # fmt: skip


def _wobble(rng: np.random.Generator, plan: Plan) -> np.ndarray:
    x, out = 0.0, []
    for _ in range(plan.periods):
        x = 0.7 * x + float(rng.normal(0.0, plan.jitter)) if plan.jitter else 0.0
        out.append(x)
    return np.array(out)


def _series(rng: np.random.Generator, plan: Plan, canary: bool) -> dict[str, list[float | None]]:
    share = plan.weight if canary else 1.0 - plan.weight
    wobble = _wobble(rng, plan)
    rows: dict[str, list[float | None]] = {m[0]: [] for m in _METRICS}
    for i in range(plan.periods):
        n = int(rng.poisson(plan.per_period * share * rng.gamma(50.0, 1.0 / 50.0)))
        if n == 0:
            for key in rows:
                rows[key].append(0.0 if key == "throttles" else None)
            continue
        p_err = plan.canary_error[i] if canary and plan.canary_error is not None else plan.error_rate
        slow = plan.canary_slowdown[i] if canary and plan.canary_slowdown is not None else 1.0
        draws = rng.lognormal(math.log(plan.median_ms * slow) + wobble[i], plan.sigma, size=min(n, _DRAWS))
        rows["invocations"].append(float(n))
        rows["errors"].append(float(rng.binomial(n, min(1.0, p_err))))
        rows["throttles"].append(0.0)
        rows["duration_p50"].append(round(float(np.percentile(draws, 50)), 3))
        rows["duration_p99"].append(round(float(np.percentile(draws, 99)), 3))
    return rows


def generate(family: str, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    plan = FAMILIES[family](rng)
    sides = {"baseline": _series(rng, plan, False), "canary": _series(rng, plan, True)}
    for side in sides.values():
        for values in side.values():
            for i in plan.lost_periods:
                values[i] = None
    for i in plan.lost_canary_errors:
        sides["canary"]["errors"][i] = None
    metrics = [
        {"id": mid, "namespace": "AWS/Lambda", "name": name, "stat": stat, "unit": unit,
         "baseline": sides["baseline"][mid], "canary": sides["canary"][mid]}
        for mid, name, stat, unit in _METRICS
    ]  # fmt: skip
    return {
        "format": "deployguard-scenario/1",
        "name": f"{family}-{seed}",
        "interval_seconds": plan.interval,
        "intervals": plan.periods,
        "canary_weight": plan.weight,
        "metrics": metrics,
        "truth": {
            "family": family,
            "expect": plan.expect,
            "onset": plan.onset,
            "rpm": round(plan.per_period * 60.0 / plan.interval, 2),
            "error_rate": plan.error_rate,
            "median_ms": plan.median_ms,
            "sigma": plan.sigma,
            "conversion_rate": 0.0,
            **plan.params,
        },
    }


def write_corpus(out: Path, seed: int, per_family: int, families: list[str] | None = None) -> int:
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for family in families or list(FAMILIES):
        for k in range(per_family):
            scenario = generate(family, seed * 7_919 + sum(map(ord, family)) * 13 + k)
            (out / f"{scenario['name']}.json").write_text(json.dumps(scenario, separators=(",", ":")))
            written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployguard_local.scenario_families", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--per-family", type=int, default=20)
    parser.add_argument("--families", help="comma-separated (default: all)")
    args = parser.parse_args(argv)
    n = write_corpus(args.out, args.seed, args.per_family, args.families.split(",") if args.families else None)
    print(f"wrote {n} scenarios to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
