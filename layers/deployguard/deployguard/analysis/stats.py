"""Small statistics for the judge, in the standard library only (the layer ships no numpy).

Everything here is a pure function of plain floats and lists.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from statistics import NormalDist

_STD = NormalDist()
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$", re.IGNORECASE)


def norm_cdf(x: float) -> float:
    return _STD.cdf(x)


def norm_ppf(p: float) -> float:
    """Quantile of the standard normal; p is clamped into (1e-12, 1 - 1e-12)."""
    return _STD.inv_cdf(min(1.0 - 1e-12, max(1e-12, p)))


def norm_pdf(x: float) -> float:
    return _STD.pdf(x)


def median(values: Sequence[float]) -> float:
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        raise ValueError("median of no values")
    mid = n // 2
    return xs[mid] if n % 2 else 0.5 * (xs[mid - 1] + xs[mid])


def mad_sigma(values: Sequence[float]) -> float:
    """Robust standard deviation: 1.4826 x the median absolute deviation (0 for < 2 values)."""
    if len(values) < 2:
        return 0.0
    m = median(values)
    return 1.4826 * median([abs(v - m) for v in values])


def percentile_of_stat(stat: str) -> float | None:
    """0.99 for CloudWatch's ``p99``, 0.5 for ``p50``; None for Average, Sum and others."""
    match = _PERCENTILE.match(stat.strip())
    if not match:
        return None
    q = float(match.group(1)) / 100.0
    return q if 0.0 < q < 1.0 else None


def quantile_noise_factor(q: float) -> float:
    """sd of the log of a sample q-quantile of a lognormal(., s), times sqrt(n)/s.

    Asymptotically sqrt(q(1-q)) / phi(z_q): 1.25 for the median, 3.73 for p99.
    """
    z = norm_ppf(q)
    return math.sqrt(q * (1.0 - q)) / norm_pdf(z)


def quantile_small_sample_bias(q: float, n: float, sigma: float) -> float:
    """Approximate bias of the log of a sample q-quantile from n draws (in log units).

    The sample p99 of 100 draws sits about 0.2 sigma below the true one; the bias
    shrinks like 1 / (n * tail) with tail = min(q, 1 - q). Measured on lognormal draws
    with linear interpolation (numpy's and CloudWatch's percentiles behave alike).
    """
    tail = min(q, 1.0 - q)
    if n <= 0:
        return 0.0
    if tail >= 0.25:
        # an even number of draws interpolates between the two middle ones: their mean
        # sits above their geometric mean by about sigma^2 / (2n) in log units
        rounded = round(n)
        return sigma * sigma / (2.0 * n) if abs(q - 0.5) < 1e-9 and rounded % 2 == 0 and rounded < 50 else 0.0
    bias = 0.2 * sigma / (n * tail)
    return -bias if q > 0.5 else bias


def rate_bounds(k: float, n: float, z: float) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n (one-sided at z each side)."""
    if n <= 0:
        return 0.0, 1.0
    p = min(1.0, max(0.0, k / n))
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
