"""Helpers for the analysis tests: small synthetic canary windows, built without numpy."""

from __future__ import annotations

import math
import random
from pathlib import Path

from deployguard.analysis.settings import default_metrics
from deployguard.models import CanaryWindow, MetricWindow

REPO_ROOT = Path(__file__).resolve().parents[3]


def shared_dir() -> Path:
    import os

    return Path(os.environ.get("DEPLOYGUARD_SHARED") or REPO_ROOT.parent / "shared")


def _poisson(rng: random.Random, lam: float) -> int:
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def make_window(
    periods: int = 20,
    *,
    rpm: float = 2000.0,
    weight: float = 0.2,
    base_error: float = 0.005,
    canary_error: float | list[float] | None = None,
    base_latency: float = 100.0,
    canary_latency_mult: float | list[float] = 1.0,
    shared_error: dict[int, float] | None = None,
    jitter: float = 0.0,
    spikes: float = 0.0,
    sigma: float = 0.5,
    seed: int = 7,
) -> CanaryWindow:
    """Per-minute Lambda aggregates for both versions; canary values may change per period.

    ``jitter``: each version's latency wobbles on its own from minute to minute (a
    mean-reverting walk with this step, in log units); ``spikes``: the chance that a
    version-minute is 1.3-2x slower on its own; ``sigma``: the spread (lognormal) of one
    invocation's duration.
    """
    rng = random.Random(seed)
    wobble = {"baseline": 0.0, "canary": 0.0}
    specs = {s.id: s for s in default_metrics()}
    series: dict[str, dict[str, list[float | None]]] = {k: {"baseline": [], "canary": []} for k in specs}
    for i in range(periods):
        for who, share in (("baseline", 1 - weight), ("canary", weight)):
            n = _poisson(rng, rpm * share)
            if who == "canary":
                ce = canary_error[i] if isinstance(canary_error, list) else canary_error
                p = base_error if ce is None else ce
                mult = canary_latency_mult[i] if isinstance(canary_latency_mult, list) else canary_latency_mult
            else:
                p, mult = base_error, 1.0
            p += (shared_error or {}).get(i, 0.0)
            if n == 0:
                for k in specs:
                    series[k][who].append(None if k != "throttles" else 0.0)
                continue
            errors = sum(1 for _ in range(n) if rng.random() < p) if n < 5000 else round(n * p)
            wobble[who] = 0.6 * wobble[who] + (rng.gauss(0, jitter) if jitter else 0.0)
            own = math.exp(wobble[who]) * (rng.uniform(1.3, 2.0) if spikes and rng.random() < spikes else 1.0)
            sd50 = 1.25 * sigma / math.sqrt(n)
            sd99 = 3.7 * sigma / math.sqrt(n)
            p50 = base_latency * mult * own * math.exp(rng.gauss(0, sd50))
            p99 = base_latency * mult * own * math.exp(2.326 * sigma + rng.gauss(0, sd99))
            series["invocations"][who].append(float(n))
            series["errors"][who].append(float(errors))
            series["throttles"][who].append(0.0)
            series["duration_p50"][who].append(round(p50, 3))
            series["duration_p99"][who].append(round(p99, 3))
    return CanaryWindow(
        canary_weight=weight,
        metrics=[MetricWindow(spec=specs[k], baseline=v["baseline"], canary=v["canary"]) for k, v in series.items()],
    )
