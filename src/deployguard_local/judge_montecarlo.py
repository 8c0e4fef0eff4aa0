"""Monte Carlo of the judge's rate test on healthy canaries: how often it fails a canary whose two
versions have the very same error law, against its share of the false-alarm budget.

    python -m deployguard_local.judge_montecarlo [--confidence 0.99] [--periods 5,15,30,60,240]
        [--wobble 0,10] [--canaries 3000] [--seed 11]

Each canary is drawn like the benchmark's (``canarygen.py``): 20-300 or 300-20,000 requests a
minute, a canary weight of 5-25%, an error rate of 0.05-1%, traffic per minute Poisson. Its
errors are binomial (``--wobble 0``), or over-dispersed: each version's rate in each period is
multiplied by its own gamma factor of mean 1 and shape ``a`` (``--wobble a``; 10: a relative
spread of 32% a period), so errors come in bursts beyond their rate in both versions alike.
Only invocations and errors are judged, so the errors test gets the whole budget 1 - c (among
the five Lambda metrics it gets 1 / 3.2 of it, ``budget_weight``). Each canary runs its whole planned length
(``horizon_periods`` = its periods, at least 15 for the threshold), so the figure is the whole
run's false-alarm probability: a share of canaries failed, with its binomial standard error; the
test is within its budget when the share is at most 1 - c, whatever the length.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from deployguard.analysis.judge import evaluate_metrics
from deployguard.analysis.settings import JudgeSettings, default_metrics
from deployguard.models import CanaryWindow, MetricWindow


def healthy_errors_canary(rng: np.random.Generator, periods: int, wobble_shape: float) -> CanaryWindow:
    """A canary whose versions err alike: binomial counts, or over-dispersed by a gamma(shape) factor
    per version and period (``wobble_shape`` 0: binomial)."""
    low = rng.random() < 0.2
    lo, hi = (20.0, 300.0) if low else (300.0, 20_000.0)
    rpm = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    weight = float(rng.choice([0.05, 0.1, 0.2, 0.25]))
    rate = math.exp(rng.uniform(math.log(0.0005), math.log(0.01)))
    calls = {"baseline": rng.poisson(rpm * (1.0 - weight), periods), "canary": rng.poisson(rpm * weight, periods)}
    errors = {}
    for side, n in calls.items():
        factor = rng.gamma(wobble_shape, 1.0 / wobble_shape, periods) if wobble_shape else np.ones(periods)
        errors[side] = rng.binomial(n, np.minimum(1.0, rate * factor))
    specs = {spec.id: spec for spec in default_metrics()}

    def series(values: np.ndarray, side: str) -> list[float | None]:
        return [None if c == 0 else float(v) for v, c in zip(values, calls[side], strict=True)]

    return CanaryWindow(
        interval_seconds=60,
        canary_weight=weight,
        metrics=[
            MetricWindow(
                spec=specs[m], baseline=series(v["baseline"], "baseline"), canary=series(v["canary"], "canary")
            )
            for m, v in (("invocations", calls), ("errors", errors))
        ],
    )


def false_alarm_share(confidence: float, periods: int, wobble_shape: float, canaries: int, seed: int) -> float:
    """The share of healthy canaries whose errors test fails (the errors test alone)."""
    rng = np.random.default_rng(seed)
    specs = [m for m in default_metrics() if m.id in ("invocations", "errors")]
    # a canary planned for this many periods (its horizon: the budget is spread over its whole run)
    settings = JudgeSettings(confidence=confidence, metrics=specs, horizon_periods=periods)
    failed = 0
    for _ in range(canaries):
        results = evaluate_metrics(healthy_errors_canary(rng, periods, wobble_shape), settings)
        failed += any(r.spec.id == "errors" and r.status == "fail" for r in results)
    return failed / canaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployguard_local.judge_montecarlo", description=__doc__)
    parser.add_argument("--confidence", type=float, default=0.99)
    parser.add_argument("--periods", default="5,15,30,60,240", help="canary lengths, comma-separated")
    parser.add_argument("--wobble", default="0,10", help="gamma shapes of the rate wobble (0: binomial)")
    parser.add_argument("--canaries", type=int, default=3000, help="canaries per cell (a quarter at 240 periods)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    allowed = 1.0 - args.confidence
    print(f"errors test alone, healthy canaries, confidence {args.confidence} (allowed {allowed:.4f})")
    print(f"{'counts':>12} {'periods':>8} {'canaries':>9} {'failed':>8} {'std err':>8}  within")
    for shape in (float(x) for x in args.wobble.split(",")):
        for periods in (int(x) for x in args.periods.split(",")):
            n = args.canaries if periods < 240 else max(1, args.canaries // 4)
            share = false_alarm_share(args.confidence, periods, shape, n, args.seed)
            counts = "binomial" if not shape else f"gamma({shape:g})"
            err = math.sqrt(share * (1.0 - share) / n)
            print(f"{counts:>12} {periods:>8} {n:>9} {share:>8.4f} {err:>8.4f}  {'yes' if share <= allowed else 'no'}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
