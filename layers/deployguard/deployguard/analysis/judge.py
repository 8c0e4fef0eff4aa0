"""The canary judge: is the new version worse than the stable one, period by period?

``judge_canary(window, settings)`` is a pure function of the periods 0..n-1 it is
given. It is called every period, live by the assessor and the state machine, and by
``deployguard replay`` on recorded scenarios, so it must not raise false alarms just
because it looks often. It is a fold: each period is folded into a small serialisable
``JudgeState`` (``evidence.py``), so a look may instead carry the state of the previous
one and pass only the new periods, ``state, verdict = judge_step(state, new_periods,
settings)``, at O(metrics) per period whatever the canary's age, with the very verdict
``judge_canary`` gives on the whole window. Every statistic is therefore sequential: a
period's evidence is weighed with the noise estimated from the periods up to it, and the
noise estimates look back over the last ``WINDOW`` periods. How each kind of metric is tested:

- **rates** (errors, throttles out of invocations; conversions out of successful
  invocations): counts are compared as counts, in the same periods. Given the events
  of both versions in a period, the canary's share of them follows a binomial law
  whose parameter depends only on the canary's relative risk ``theta`` and the two
  denominators, so anything that hits both versions in that period (an incident, a
  traffic spike) cancels out. For a grid of harmful relative risks a one-sided
  CUSUM (Page's test, the repeated sequential probability ratio test) of
  "theta = harmful" against "theta = the smallest change that matters" runs over all
  periods; their likelihood ratios are mixed with weights that sum to one (the
  largest, a new failure mode, gets 30%, split over the places such a run could
  start), and the canary fails when the mixture crosses a threshold set from the
  confidence. The CUSUM is built to be looked at after every observation.
- **latency percentiles**: the paired log-difference canary minus baseline in each
  period, whose noise is that of a sample quantile of n draws (known from the
  percentile, the traffic of each version and the spread of the distribution, read
  from the baseline's own p50/p99) plus each version's own wobble between periods,
  estimated from the data (both versions' own period-to-period steps over the last
  periods, robustly, with their memory and rare spikes, and a prior that fades as the
  periods add up), each period weighed against a Student t with the degrees of freedom
  of that estimate as far as it weighs in the noise (Welch-Satterthwaite: a young
  estimate's spikes weigh as the log of their size; where the known sampling noise
  dominates, the reference is near normal). A median is read from one invocation; a p99 with too few invocations per
  period is judged through the p50 of the same metric. The same CUSUM runs on it, with no cap:
  a period's evidence counts up to twice the next largest of its run (one odd minute
  cannot fail a release alone, a confirmed one fails it at once).
- **gauges**: paired differences with a noise level estimated robustly from the
  data itself.

A canary without enough evidence (too few invocations or periods) is inconclusive,
never healthy; so is one whose guarded metric is missing (a CloudWatch error status,
or no datapoint in a period its version was invoked: missing, never zero) unless the
metric is ``optional``. Just after a traffic shift, latency and gauge evidence is told
apart by shape: it counts only as far as every later period up to the first one after the grace
periods confirms it (a cold start decays, a regression persists); a tail percentile whose lower
percentile did not move (cold starts lift the tail only) waits up to twice the grace periods. The
confidence is the
canary's, not each metric's: its false-alarm budget is split over the metric tests judged
at once by their ``budget_weight`` (a weighted Bonferroni split,
``JudgeSettings.threshold_for_share``; the default Lambda metrics give Throttles a fifth of
another's weight), and over the canary's whole run: the threshold is set for its planned
run, ``horizon_periods`` (a service's canary plan, every step baked; CodeDeploy's deployment
configuration for a canary it drives; the post-traffic hook's window; a replayed recording's
length: ``JudgeSettings.for_run``), rising with the log of it, so a long canary does not accumulate false alarms; a
run that outlasts it, waiting for evidence, pays more as it goes.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from deployguard.analysis.evidence import (
    GAUGE_MIN_PAIRS,
    WINDOW,
    Cusum,
    GaugeState,
    LatencyState,
    Missing,
    RateState,
    Result,
    ShiftEvidence,
    between_period_variance,
    confidence_of,
    fold_rate_wobble,
    pct,
    push_window,
    rate_wobble,
    shift_increments,
    signed_pct,
    wobble_estimate,
)
from deployguard.analysis.packing import Packer, Unpacker, f32
from deployguard.analysis.settings import (
    ALTERNATIVES,
    GAUGE_GRID,
    LATENCY_GRID,
    LATENCY_GROSS_GRID,
    LATENCY_GROSS_SHARE,
    RATE_DROP_GRID,
    RATE_GRID,
    JudgeSettings,
    resolve_spec,
    same_metric,
    stand_ins,
)
from deployguard.analysis.stats import (
    mad_sigma,
    median,
    norm_ppf,
    percentile_of_stat,
    quantile_noise_factor,
    quantile_small_sample_bias,
    rate_bounds,
)
from deployguard.exceptions import JudgeStateError
from deployguard.models import (
    CanaryWindow,
    DataGap,
    Decision,
    Direction,
    MetricKind,
    MetricSpec,
    MetricWindow,
    Verdict,
)

JUDGE_NAME = "deployguard"
_MIN_DOF, _MAX_DOF = 3.0, 30.0  # degrees of freedom of the latency noise's t reference
_UNKNOWN_WOBBLE = 0.1  # a version's latency wobble per period (log units) taken when its sampling noise is unknown


def _at(values: list[float | None], i: int) -> float | None:
    return values[i] if 0 <= i < len(values) else None


def _confidence_of(evidence: float) -> float:
    return confidence_of(evidence, ALTERNATIVES)


def _rate_grid(spec: MetricSpec, settings: JudgeSettings) -> tuple[float, list[float]]:
    rel = settings.min_effect.rate_relative
    if spec.direction == Direction.INCREASE_IS_BAD:
        theta0 = 1.0 + rel
        return theta0, [1.0 + g for g in RATE_GRID if 1.0 + g > theta0]
    theta0 = max(1e-6, 1.0 - rel)
    return theta0, [1.0 - g for g in RATE_DROP_GRID if 1.0 - g < theta0]


def _rate_offsets(spec: MetricSpec, width: int, restarts: int) -> list[float] | None:
    """The rate test's false-alarm budget over its alternatives, a weighted union bound: where more
    events are bad, the largest relative risk (the canary failing where the baseline does not: a
    new failure mode) gets 30% of it, so a few events against none are tested nearly exactly
    (10 against 0 at equal traffic: p 0.001 in a fixed-size test); the others share the rest.
    One test, one budget: the weights sum to 1 (None: the even split the threshold assumes).

    A new failure mode's run (canary events, none of the baseline's) can begin only at the
    start or after a period in which the baseline had events: each of those ``restarts`` is one
    more place such a run may start by chance, and its share of the budget is split over them
    (a scan over the canary's events, not one test). A baseline without errors costs nothing."""
    if spec.direction != Direction.INCREASE_IS_BAD or width < 2:
        return None
    return _offsets([0.7 / (width - 1)] * (width - 1) + [0.3 / (1.0 + restarts)])


def _offsets(weights: list[float]) -> list[float]:
    """Alternatives' weights (summing to at most one) as the CUSUM's offsets: ``log(1 / w) - log(ALTERNATIVES)``."""
    return [math.log(1.0 / w) - math.log(ALTERNATIVES) for w in weights]


def _new_state(spec: MetricSpec, settings: JudgeSettings) -> RateState | LatencyState | GaugeState | None:
    if spec.kind == MetricKind.RATE_COUNT:
        _, grid = _rate_grid(spec, settings)
        return RateState(kind="rate", cusum=Cusum.new(len(grid), 4))
    if spec.kind == MetricKind.LATENCY:
        cusum = Cusum.new(len(_latency_alternatives(settings)[0]), 5, True)
        # a tail percentile's shape periods may last twice the grace periods (see _tail_only)
        q = percentile_of_stat(spec.stat)
        tail = q is not None and min(q, 1.0 - q) < 0.25
        capacity = max(1, settings.grace_periods) * (2 if tail else 1)
        return LatencyState(kind="latency", shift=ShiftEvidence(cusum=cusum, capacity=capacity))
    if spec.kind == MetricKind.COUNT:
        return None
    cusum = Cusum.new(len(GAUGE_GRID), 0, True)
    return GaugeState(kind="gauge", shift=ShiftEvidence(cusum=cusum, capacity=max(1, settings.grace_periods)))


def _fold_rate(
    st: RateState,
    spec: MetricSpec,
    num: MetricWindow,
    den: MetricWindow,
    minus: MetricWindow | None,
    add_numerator: bool,
    i: int,
    period: int,
    settings: JudgeSettings,
) -> None:
    """One period of a rate's conditional binomial CUSUM on the relative risk, canary vs baseline."""
    kc, kb = _at(num.canary, i), _at(num.baseline, i)
    nc, nb = _at(den.canary, i) or 0.0, _at(den.baseline, i) or 0.0
    if add_numerator:
        nc += kc or 0.0
        nb += kb or 0.0
    if minus is not None:
        nc -= _at(minus.canary, i) or 0.0
        nb -= _at(minus.baseline, i) or 0.0
    if nc <= 0 or nb <= 0 or kc is None or kb is None:
        return
    kc, kb = max(0.0, min(kc, nc)), max(0.0, min(kb, nb))
    theta0, grid = _rate_grid(spec, settings)
    k = kc + kb
    fold_rate_wobble(st.spread, kb, nb)
    if k <= 0:
        inc = [0.0] * len(grid)
    else:
        r = nc / nb
        base = theta0 * r + 1.0
        # the conditional law of the canary's share is hypergeometric, narrower than the
        # binomial by 1 - k/N; when each version's rate wobbles on its own (relative variance
        # tau^2 each, told by the baseline's), the share's log-odds varies by about 2 tau^2 and
        # the split is wider than the binomial by 1 + (k - 1) 2 tau^2 pi (1 - pi)
        # (beta-binomial): scale the evidence accordingly (quasi-likelihood)
        share = theta0 * r / base
        over = 1.0 + max(0.0, k - 1.0) * 2.0 * rate_wobble(st.spread) * share * (1.0 - share)
        scale = 1.0 / max(0.05, 1.0 - k / (nc + nb)) / over
        inc = [scale * (kc * math.log(t / theta0) + k * math.log(base / (t * r + 1.0))) for t in grid]
    row = [kc, nc, kb, nb]
    extra = settings.horizon_penalty(period)
    st.cusum.push(period, inc, extra, row, _rate_offsets(spec, len(grid), st.restarts))
    st.rows += 1
    if kb > 0:
        st.restarts += 1


def _rate_result(st: RateState, spec: MetricSpec, settings: JudgeSettings, threshold: float) -> Result:
    if st.rows == 0:
        return Result(spec, "inconclusive", f"{spec.id}: no period with data from both versions")
    bad_up = spec.direction == Direction.INCREASE_IS_BAD
    best = st.cusum
    evidence = best.best
    tot = st.totals
    rate_c, rate_b = tot[0] / tot[1], tot[2] / tot[3]
    what = f"{spec.id}: canary {pct(rate_c)} ({tot[0]:g}/{tot[1]:g}) vs baseline {pct(rate_b)} ({tot[2]:g}/{tot[3]:g})"
    if evidence >= threshold:
        kc_w, nc_w, kb_w, nb_w = best.best_run
        wc, wb = kc_w / nc_w, kb_w / nb_w
        diff = wc - wb if bad_up else wb - wc
        if diff >= settings.min_effect.rate_absolute:
            effect: float | None = (wc / wb - 1.0) if wb > 0 else math.inf
            change = signed_pct(effect if effect is not None else math.inf)
            return Result(
                spec,
                "fail",
                f"{spec.id}: canary {pct(wc)} ({kc_w:g}/{nc_w:g}) vs baseline {pct(wb)} ({kb_w:g}/{nb_w:g})"
                f" since period {best.best_start}, {change}",
                evidence=evidence,
                effect=effect,
                baseline_value=wb,
                canary_value=wc,
                confidence=_confidence_of(evidence),
                at=best.best_at,
            )
    effect = (rate_c / rate_b - 1.0) if rate_b > 0 else (0.0 if rate_c == 0 else None)
    # healthy needs a bound: the canary's rate is not much worse than the baseline's
    z = norm_ppf(settings.healthy_confidence)
    lo, hi = rate_bounds(tot[0], tot[1], z)
    margin = max(settings.healthy_margin_absolute, settings.healthy_margin_relative * rate_b)
    ok = (hi - rate_b <= margin) if bad_up else (rate_b - lo <= margin)
    if ok:
        # what "pass" means: bounded within the healthy margin at healthy_confidence
        sure = f"{settings.healthy_confidence:.0%}"
        within = (
            f"within {pct(rate_b + margin)} (baseline + {pct(margin)}): {sure} upper bound {pct(hi)}"
            if bad_up
            else f"at least {pct(max(0.0, rate_b - margin))} (baseline - {pct(margin)}): {sure} lower bound {pct(lo)}"
        )
        return Result(
            spec, "pass", f"{what}: {within}", evidence=evidence, effect=effect, baseline_value=rate_b,
            canary_value=rate_c, confidence=settings.healthy_confidence, canary_bound=hi if bad_up else lo,
        )  # fmt: skip
    return Result(
        spec, "inconclusive", f"{what}: too few canary events to bound it", evidence=evidence, effect=effect,
        baseline_value=rate_b, canary_value=rate_c,
    )  # fmt: skip


_Pair = tuple[float, MetricWindow, float, MetricWindow]


def _sibling_pair(metrics: dict[str, MetricWindow], spec: MetricSpec) -> _Pair | None:
    """The two percentiles of the same metric that tell its spread: (q_lo, its window, q_hi, its window)."""
    q = percentile_of_stat(spec.stat)
    if q is None:
        return None
    for m in metrics.values():
        if m.spec.id == spec.id or m.spec.name != spec.name or m.spec.namespace != spec.namespace:
            continue
        q2 = percentile_of_stat(m.spec.stat)
        if q2 is not None and abs(q2 - q) > 0.2:
            own = metrics[spec.id]
            (q_lo, lo_m), (q_hi, hi_m) = sorted([(q, own), (q2, m)], key=lambda x: x[0])
            return q_lo, lo_m, q_hi, hi_m
    return None


def _fold_spread(
    spreads: dict[str, list[float]], pair: _Pair,
    counts: MetricWindow | None, i: int,
) -> float | None:  # fmt: skip
    """The spread (lognormal sigma) of the duration behind a percentile as of period i, from two
    percentiles of the same metric (the baseline's first, else the canary's) over the last periods.

    log(p_hi / p_lo) = sigma (z_hi - z_lo) for a lognormal; the sample upper percentile of
    few draws sits low, which is corrected for. Shared slowdowns scale both percentiles
    and cancel out.
    """
    q_lo, lo_m, q_hi, hi_m = pair
    gap = norm_ppf(q_hi) - norm_ppf(q_lo)
    tail = min(q_hi, 1.0 - q_hi)
    for side in ("baseline", "canary"):
        lo, hi = _at(getattr(lo_m, side), i), _at(getattr(hi_m, side), i)
        if lo is None or hi is None or lo <= 0 or hi < lo:
            continue
        n = _at(getattr(counts, side), i) if counts is not None else None
        if counts is not None and (n is None or n * tail < 1.0):
            continue
        if side == "canary" and spreads.get("baseline"):
            continue  # the baseline's spread tells it: the canary's is not needed
        correction = 1.0 - (0.2 / (n * tail) if n else 0.0) / gap
        if side == "baseline":
            spreads.pop("canary", None)
        recent = spreads.setdefault(side, [])
        recent.append(f32(math.log(hi / lo) / gap / correction))
        if len(recent) > WINDOW:
            del recent[0]
    for side in ("baseline", "canary"):
        if spreads.get(side):
            return median(spreads[side])
    return None


def _latency_alternatives(settings: JudgeSettings) -> tuple[list[float], list[float]]:
    """The harmful shifts tested (log units: the common ones, then the gross ones) beyond the
    smallest effect, and their share of the latency test's budget as offsets (weights summing to
    one): the gross shifts share ``LATENCY_GROSS_SHARE`` of it, the common ones the rest, evenly."""
    delta0 = math.log1p(settings.min_effect.latency_relative)
    common = [math.log1p(g) for g in LATENCY_GRID if math.log1p(g) > delta0]
    gross = [math.log1p(g) for g in LATENCY_GROSS_GRID if math.log1p(g) > delta0]
    share = LATENCY_GROSS_SHARE if common and gross else (1.0 if gross else 0.0)
    weights = [(1.0 - share) / len(common)] * len(common) + [share / len(gross)] * len(gross)
    return common + gross, _offsets(weights)


def _latency_min_samples(spec: MetricSpec, settings: JudgeSettings) -> float:
    q = percentile_of_stat(spec.stat)
    tail = min(q, 1.0 - q) if q is not None else 0.5
    min_n = float(settings.latency_min_samples)
    return max(min_n, 1.0 / tail) if tail < 0.25 else min_n


def _fold_latency(
    st: LatencyState,
    mw: MetricWindow,
    counts: MetricWindow | None,
    sigma: float | None,
    i: int,
    period: int,
    shape: bool,
    settings: JudgeSettings,
) -> None:
    """One period of a latency percentile: the paired log difference, its noise (sampling noise of
    the statistic at that traffic plus both versions' own wobble, estimated on the periods so
    far) and its evidence for each harmful shift."""
    spec = mw.spec
    sign = 1.0 if spec.direction == Direction.INCREASE_IS_BAD else -1.0
    c, b = _at(mw.canary, i), _at(mw.baseline, i)
    if c is None or b is None or c <= 0 or b <= 0:
        return
    q = percentile_of_stat(spec.stat)
    sigma = sigma if sigma is not None else 0.6  # a wide prior spread when no sibling percentile tells
    k = quantile_noise_factor(q) if q is not None else 1.0
    yc, yb, sc, sb = math.log(c), math.log(b), 0.0, 0.0
    if counts is not None:
        nc, nb = _at(counts.canary, i) or 0.0, _at(counts.baseline, i) or 0.0
        min_n = _latency_min_samples(spec, settings)
        if nc < min_n or nb < min_n:
            return
        if q is not None:
            yc -= quantile_small_sample_bias(q, nc, sigma)
            yb -= quantile_small_sample_bias(q, nb, sigma)
        sc, sb = (k * sigma) ** 2 / nc, (k * sigma) ** 2 / nb
    d, s = sign * (yc - yb), sc + sb
    push_window(st.baseline, [yb, sb], WINDOW + 1)
    if not shape:
        push_window(st.steady, [d, s])
    # the prior wobble: the period's own sampling noise (plus the configured floor, none by default);
    # without invocation counts the sampling noise is unknown: a 10% wobble per version
    prior = (s if counts is not None else 2.0 * _UNKNOWN_WOBBLE**2) + 2.0 * settings.latency_noise_floor**2
    st.wobble = wobble_estimate(st.steady, st.baseline)
    if st.wobble:
        # the last periods' estimate, or the canary's life-long one when larger: a long canary's
        # sliding estimate dips low now and then by chance, and would read a wobble as a shift
        long_run, m = st.wobble
        st.life = [f32(st.life[0] + m * long_run), f32(st.life[1] + m)]
        st.wobble = [f32(max(long_run, st.life[0] / st.life[1])), f32(m)]
    v = max(1e-12, s + between_period_variance(st.wobble, prior))
    grid, offsets = _latency_alternatives(settings)
    # the noise is partly estimated from few periods: weigh the period against a Student t whose
    # degrees of freedom are those of the estimated part, as far as it weighs in the noise
    # (Welch-Satterthwaite: the sampling noise is known; m steps tell the wobble): heavy tails while
    # a young wobble estimate dominates, near normal where sampling noise does
    wobble = v - s
    steps = st.wobble[1] if st.wobble else 0.0
    dof = _MAX_DOF if wobble <= 0.0 else min(_MAX_DOF, max(_MIN_DOF, steps * (v / wobble) ** 2))
    inc = shift_increments(d, v, math.log1p(settings.min_effect.latency_relative), grid, dof)
    st.shift.push(period, inc, [d / v, 1.0 / v, math.log(c), math.log(b), 1.0], shape,
                  settings.horizon_penalty(period), settings, offsets)  # fmt: skip
    st.rows += 1
    if not shape:
        n_, dv, w, ds, w1, w2, lc, lb = st.steady_sums
        p = 1.0 / s if s > 0 else 0.0  # sampling precision
        st.steady_sums = [
            n_ + 1.0, f32(dv + d / v), f32(w + 1.0 / v), f32(ds + d * p), f32(w1 + p), f32(w2 + p * p),
            f32(lc + yc * p), f32(lb + yb * p),
        ]  # fmt: skip


def _sibling_percentile(metrics: dict[str, MetricWindow], spec: MetricSpec) -> MetricSpec | None:
    """A lower percentile of the same metric (p50 for a p99): what a p99 falls back to."""
    q = percentile_of_stat(spec.stat)
    best = None
    for m in metrics.values():
        q2 = percentile_of_stat(m.spec.stat)
        if m.spec.id == spec.id or m.spec.name != spec.name or m.spec.namespace != spec.namespace or q2 is None:
            continue
        if q is not None and q2 < q and (best is None or q2 > (percentile_of_stat(best.stat) or 0.0)):
            best = m.spec
    return best


def _latency_result(
    st: LatencyState,
    spec: MetricSpec,
    metrics: dict[str, MetricWindow],
    settings: JudgeSettings,
    threshold: float,
    active: int,
) -> Result:
    """A latency percentile's verdict. A tail percentile (p99) that had traffic enough in fewer than
    half the periods the canary was invoked in (a p99 needs 100 invocations a period) is judged
    through the lower percentile of the same metric while it cannot be bounded: its failing
    evidence still fails the canary, its missing bound does not hold a low-traffic canary."""
    sign = 1.0 if spec.direction == Direction.INCREASE_IS_BAD else -1.0
    q = percentile_of_stat(spec.stat)
    tail = min(q, 1.0 - q) if q is not None else 0.5
    sibling = _sibling_percentile(metrics, spec) if q is not None and tail < 0.25 else None
    if st.rows == 0:
        if sibling is not None:
            return Result(
                spec,
                "inconclusive",
                f"{spec.id}: too few invocations per period for a {spec.stat}; judged through {sibling.id}",
                blocks_healthy=False,
            )
        if q is not None and tail < 0.25 and active:
            # a tail percentile configured alone (live, the reader reads an implicit p50 beside it)
            return Result(
                spec,
                "inconclusive",
                f"{spec.id}: too few invocations per period for a {spec.stat} (it needs"
                f" {_latency_min_samples(spec, settings):.0f}) and no p50 of {spec.name} in the data to judge"
                " it through",
            )
        return Result(spec, "inconclusive", f"{spec.id}: no period with data from both versions yet")
    cusum = st.shift.settled(settings, _latency_alternatives(settings)[1])
    evidence = cusum.best
    unit = f" {spec.unit}" if spec.unit else ""
    if evidence >= threshold:
        dv, w, log_c, log_b, count = cusum.best_run
        shift = sign * dv / w
        c_run, b_run = math.exp(log_c / count), math.exp(log_b / count)
        return Result(
            spec,
            "fail",
            f"{spec.id}: canary {c_run:.4g} vs baseline {b_run:.4g}{unit}"
            f" since period {cusum.best_start}, {signed_pct(math.expm1(sign * shift))}",
            evidence=evidence,
            effect=math.expm1(sign * shift),
            baseline_value=b_run,
            canary_value=c_run,
            confidence=_confidence_of(evidence),
            at=cusum.best_at,
        )
    every = cusum.total  # sums over every period so far: d/v, 1/v, log canary, log baseline, periods
    # the values shown are of the very periods and weights the mean difference is of, so that
    # canary / baseline - 1 is the effect shown beside them
    c_mid, b_mid = math.exp(every[2] / st.rows), math.exp(every[3] / st.rows)
    of = f"geometric mean of {st.rows} periods"
    steady, _, _, dp_sum, p_sum, p2_sum, lc_sum, lb_sum = st.steady_sums
    if steady and p_sum > 0:
        # the mean difference outside the grace periods weighted by sampling precision, its noise
        # from the latest estimate of the wobble (the most periods tell it best)
        mean = dp_sum / p_sum
        wobble = between_period_variance(st.wobble, steady / p_sum + 2.0 * settings.latency_noise_floor**2)
        se = math.sqrt((p_sum + wobble * p2_sum) / (p_sum * p_sum))
        c_mid, b_mid = math.exp(lc_sum / p_sum), math.exp(lb_sum / p_sum)
        of = f"geometric mean of {steady:.0f} periods weighted by traffic" + (
            f", not the {st.rows - steady:.0f} just after a traffic shift" if st.rows > steady else ""
        )
        effect = math.expm1(sign * mean)
    else:
        mean, se = (
            (st.steady_sums[1] / st.steady_sums[2], math.sqrt(1.0 / st.steady_sums[2]))
            if steady
            else (every[0] / every[1], math.sqrt(1.0 / every[1]))
        )
        effect = c_mid / b_mid - 1.0
    upper = mean + norm_ppf(settings.healthy_confidence) * se
    what = f"{spec.id}: canary {c_mid:.4g} vs baseline {b_mid:.4g}{unit}"
    if upper <= math.log1p(settings.latency_healthy_margin):
        # what "pass" means: the shift is bounded within the healthy margin at healthy_confidence
        limit, bound = math.expm1(sign * math.log1p(settings.latency_healthy_margin)), math.expm1(sign * upper)
        side = "upper" if sign > 0 else "lower"
        within = f"within {limit:+.0%}: {settings.healthy_confidence:.0%} {side} bound {signed_pct(bound)}"
        return Result(
            spec, "pass", f"{what} ({of}): {within}", evidence=evidence, effect=effect,
            baseline_value=b_mid, canary_value=c_mid, confidence=settings.healthy_confidence,
            canary_bound=b_mid * (1.0 + bound),
        )  # fmt: skip
    if sibling is not None and 2 * st.rows < active:
        return Result(
            spec, "inconclusive", f"{what}: a {spec.stat} in only {st.rows} of {active} periods (too few invocations"
            f" per period), too noisy to bound; judged through {sibling.id}", evidence=evidence, effect=effect,
            baseline_value=b_mid, canary_value=c_mid, blocks_healthy=False,
        )  # fmt: skip
    return Result(
        spec, "inconclusive", f"{what}: too noisy to bound yet", evidence=evidence, effect=effect,
        baseline_value=b_mid, canary_value=c_mid,
    )  # fmt: skip


def _fold_gauge(st: GaugeState, mw: MetricWindow, i: int, period: int, shape: bool, settings: JudgeSettings) -> None:
    """One period of a gauge: the paired difference, with a noise level from the last periods'
    steps (the first pairs wait until there are enough to tell it)."""
    c, b = _at(mw.canary, i), _at(mw.baseline, i)
    if c is None or b is None:
        return
    sign = 1.0 if mw.spec.direction == Direction.INCREASE_IS_BAD else -1.0
    d = sign * (c - b)
    push_window(st.recent, [d, abs(b)])
    st.pairs += 1
    st.sums = [f32(st.sums[0] + c), f32(st.sums[1] + b)]
    st.waiting.append([float(period), f32(d), 1.0 if shape else 0.0])
    if st.pairs < GAUGE_MIN_PAIRS:
        return
    level = median([r[1] for r in st.recent])
    diffs = [r[0] for r in st.recent]
    steps = [diffs[j + 1] - diffs[j] for j in range(len(diffs) - 1)]
    noise = max(mad_sigma(steps) / math.sqrt(2.0), 0.01 * level, 1e-9)
    delta0 = max(settings.min_effect.gauge_relative * level, settings.min_effect.gauge_absolute)
    grid = [delta0 + g * noise for g in GAUGE_GRID]
    for p, d_p, shape_p in st.waiting:
        inc = shift_increments(d_p, noise**2, delta0, grid)
        st.shift.push(int(p), inc, [], bool(shape_p), settings.horizon_penalty(int(p)), settings)
    st.waiting = []


def _gauge_result(st: GaugeState, spec: MetricSpec, settings: JudgeSettings, threshold: float) -> Result:
    if st.pairs < GAUGE_MIN_PAIRS:  # a guarded gauge not judged yet (revenue, CPU) holds a promotion, as any metric
        return Result(spec, "inconclusive", f"{spec.id}: {st.pairs} periods, too few to judge (it needs "
                      f"{GAUGE_MIN_PAIRS})")  # fmt: skip
    cusum = st.shift.settled(settings)
    evidence = cusum.best
    c_mean, b_mean = st.sums[0] / st.pairs, st.sums[1] / st.pairs
    effect = (c_mean / b_mean - 1.0) if b_mean else None
    what = f"{spec.id}: canary {c_mean:.4g} vs baseline {b_mean:.4g}"
    if evidence >= threshold:
        return Result(
            spec, "fail", f"{what} since period {cusum.best_start}", evidence=evidence, effect=effect,
            baseline_value=b_mean, canary_value=c_mean, confidence=_confidence_of(evidence), at=cusum.best_at,
        )  # fmt: skip
    # a gauge passes when no shift is found: it is not bounded, so no confidence is stated
    return Result(
        spec, "pass", f"{what}: no shift found", evidence=evidence, effect=effect, baseline_value=b_mean,
        canary_value=c_mean,
    )  # fmt: skip


# --------------------------------------------------------------------------- the state


MetricState = Annotated[RateState | LatencyState | GaugeState, Field(discriminator="kind")]


_STATE_FORMAT = "deployguard-judge-state/7"
_KINDS: dict[str, type[RateState] | type[LatencyState] | type[GaugeState]] = {
    "rate": RateState, "latency": LatencyState, "gauge": GaugeState,
}  # fmt: skip
_KIND_CODES = {"": 0, "rate": 1, "latency": 2, "gauge": 3}


class JudgeState(BaseModel):
    """The judge's whole sequential state after ``periods`` periods of a canary: serialisable, and of
    one size from the first period on (about 3.5 KB as compact JSON for the default Lambda metrics;
    see :meth:`dump`).

    Store it with ``state.dump()`` (a JSON-ready dict, e.g. on the deployment's record) and read
    it back with ``JudgeState.load(data)``; pass it to :func:`judge_step` with the periods read
    since. ``fingerprint`` ties it to the settings and metrics it was built with.
    """

    model_config = ConfigDict(extra="forbid")

    format: Literal["deployguard-judge-state/7"]
    fingerprint: str
    ids: list[str] = Field(default_factory=list, description="every metric of the window, in order")
    periods: int = Field(default=0, ge=0, description="periods folded in so far (0..periods-1)")
    shift: int | None = Field(default=None, description="the period of the last traffic shift")
    canary_calls: float = 0.0
    active: int = 0
    present: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, MetricState] = Field(default_factory=dict)
    missing: dict[str, Missing] = Field(default_factory=dict)
    spreads: dict[str, dict[str, list[float]]] = Field(default_factory=dict)

    def dump(self) -> dict[str, Any]:
        """The state as a small JSON-ready dict of strings: the metrics' ids, and every number
        packed at its full capacity as float32 in one base64 string (``packing``), so its size
        does not change with the canary's age. Only ``missing`` (the periods a guarded metric
        lacked evidence, by reason) is kept as it is, when there were any."""
        out = Packer()
        out.extend([self.periods, math.nan if self.shift is None else self.shift, self.canary_calls, self.active], 4)
        for metric_id in self.ids:
            st = self.metrics.get(metric_id)
            out.add(self.present.get(metric_id, 0))
            out.add(_KIND_CODES[st.kind if st is not None else ""])
            if st is not None:
                st.pack(out)
        for sides in self.spreads.values():
            for side in ("baseline", "canary"):
                out.rows([[x] for x in sides.get(side, [])], WINDOW, 1)
        dumped: dict[str, Any] = {
            "format": self.format, "fingerprint": self.fingerprint, "metrics": list(self.ids),
            "spreads": list(self.spreads), "data": out.text(),
        }  # fmt: skip
        if self.missing:
            dumped["missing"] = {k: v.model_dump(mode="json", exclude_defaults=True) for k, v in self.missing.items()}
        return dumped

    @classmethod
    def load(cls, data: dict[str, Any] | str | bytes) -> JudgeState:
        """A state from :meth:`dump`'s dict (or its JSON text); ValueError naming the field when
        it is not one."""
        if isinstance(data, str | bytes):
            data = json.loads(data)
        if not isinstance(data, dict):
            raise ValueError("judge state: expected an object")
        if data.get("format") != _STATE_FORMAT:
            raise ValueError(f"format: expected {_STATE_FORMAT!r}, got {data.get('format')!r}")
        for key in ("fingerprint", "data"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"{key}: expected a string")
        ids, spread_keys = data.get("metrics"), data.get("spreads")
        for key, value in (("metrics", ids), ("spreads", spread_keys)):
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise ValueError(f"{key}: expected a list of strings")
        assert isinstance(ids, list) and isinstance(spread_keys, list)
        packed = Unpacker(data["data"])
        state = cls(
            format=_STATE_FORMAT, fingerprint=data["fingerprint"], ids=ids, periods=packed.take_int(),
            shift=packed.take_optional_int(), canary_calls=packed.take(), active=packed.take_int(),
            missing={k: Missing.model_validate(v) for k, v in (data.get("missing") or {}).items()},
        )  # fmt: skip
        kinds = {code: kind for kind, code in _KIND_CODES.items()}
        for metric_id in ids:
            state.present[metric_id] = packed.take_int()
            kind = kinds.get(packed.take_int())
            if kind is None:
                raise ValueError(f"data: unknown kind of metric {metric_id!r}")
            if kind:
                state.metrics[metric_id] = _KINDS[kind].unpack(packed)
        for key in spread_keys:
            sides = {side: [row[0] for row in packed.rows(WINDOW, 1)] for side in ("baseline", "canary")}
            state.spreads[key] = {side: values for side, values in sides.items() if values}
        packed.done()
        return state


def _fingerprint(settings: JudgeSettings, specs: list[MetricSpec]) -> str:
    text = settings.model_dump_json() + "|" + "|".join(spec.model_dump_json() for spec in specs)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def state_fits(state: JudgeState | dict[str, Any], settings: JudgeSettings, metrics: list[MetricSpec]) -> bool:
    """Whether a stored judge state (``JudgeState.dump()``'s dict, or a state) is of this format and
    was built with these settings and these metrics (in the window's order, as given or as
    inferred): :func:`judge_step` takes it rather than raising ``JudgeStateError`` for it. Pure and
    cheap: the packed numbers are not read."""
    stored: dict[str, Any] = (
        {"format": state.format, "fingerprint": state.fingerprint} if isinstance(state, JudgeState) else state
    )
    if not isinstance(stored, dict):
        return False
    form, fingerprint = stored.get("format"), stored.get("fingerprint")
    ids = {spec.id for spec in metrics}
    return form == _STATE_FORMAT and fingerprint == _fingerprint(settings, [resolve_spec(s, ids) for s in metrics])


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


def _in_grace(period: int, shift: int | None, grace: int) -> bool:
    """Just after the start or the last traffic shift (cold starts of new instances)."""
    return period < grace or (shift is not None and shift <= period < shift + grace)


_MOVED_Z = 3.0  # a lower percentile this many sampling sds from the baseline's: the whole distribution moved


def _tail_estimable(tail: MetricSpec, counts: MetricWindow | None, i: int, settings: JudgeSettings) -> bool:
    """Whether both versions had the invocations a tail percentile needs in period ``i`` (100 for a p99)."""
    if counts is None:
        return False
    need = _latency_min_samples(tail, settings)
    return (_at(counts.canary, i) or 0.0) >= need and (_at(counts.baseline, i) or 0.0) >= need


def _tail_only(
    metrics: dict[str, MetricWindow], spec: MetricSpec, counts: MetricWindow | None, sigma: float | None, i: int
) -> bool:
    """A tail percentile's period whose lower percentile of the same metric (its sibling) stayed where the
    baseline's is: what cold starts look like (a few slow calls on new instances lift the p99, not the p50),
    and what a regression of the whole distribution does not. Such periods just after a traffic shift count
    as shape periods for as long again as the grace periods (their evidence waits for a later period to
    confirm it): a cold start that lasts a little longer than the grace periods decays before it is
    confirmed, while a slowdown of every call moves the p50 too and is confirmed as soon as ever. A
    tail-only regression that persists is still confirmed, later (after twice the grace periods)."""
    sibling = _sibling_percentile(metrics, spec)
    if sibling is None or counts is None:
        return False
    mw = metrics[sibling.id]
    c, b = _at(mw.canary, i), _at(mw.baseline, i)
    nc, nb = _at(counts.canary, i), _at(counts.baseline, i)
    if c is None or b is None or c <= 0 or b <= 0 or not nc or not nb:
        return False  # nothing tells: the tail's own grace only
    q = percentile_of_stat(sibling.stat)
    k = quantile_noise_factor(q) if q is not None else 1.0
    sd = k * (sigma if sigma is not None else 0.6) * math.sqrt(1.0 / nc + 1.0 / nb)
    sign = 1.0 if spec.direction == Direction.INCREASE_IS_BAD else -1.0
    return sign * math.log(c / b) < _MOVED_Z * sd


def _fold(state: JudgeState, metrics: dict[str, MetricWindow], i: int, settings: JudgeSettings) -> None:
    """Fold period ``state.periods`` (index ``i`` of the windows in ``metrics``) into the state."""
    period = state.periods
    counts = _count_metric(metrics)
    shape = _in_grace(period, state.shift, settings.grace_periods)
    rate_shape = _in_grace(period, state.shift, settings.rate_grace_periods)
    if counts is not None:
        calls = _at(counts.canary, i)
        if calls:
            state.canary_calls = f32(state.canary_calls + calls)
            state.active += 1
    sigmas: dict[str, float | None] = {}
    # an implicit p50 stands in for its tail only where the tail cannot be estimated: it folds only those
    # periods (a p50 shift while the tail was judged on its own is no evidence the configuration asked for)
    standing_in = stand_ins(settings.metrics, [m.spec for m in metrics.values()])
    for mw in metrics.values():
        spec = mw.spec
        if _at(mw.canary, i) is not None:
            state.present[spec.id] = state.present.get(spec.id, 0) + 1
        if spec.kind == MetricKind.LATENCY:
            pair = _sibling_pair(metrics, spec)
            if pair is not None:
                key = f"{spec.namespace}/{spec.name}"
                if key not in sigmas:
                    sigmas[key] = _fold_spread(state.spreads.setdefault(key, {}), pair, counts, i)
                sigmas[spec.id] = sigmas[key]
        # what is missing: reported gaps, and silent periods while the version was invoked
        reported = {(g.version, p): g.reason for g in mw.gaps for p in g.periods}
        for side in ("canary", "baseline"):
            reason = reported.get((side, i))
            silent = (
                counts is not None and counts is not mw and _at(getattr(mw, side), i) is None
                and (_at(getattr(counts, side), i) or 0.0) > 0
            )  # fmt: skip
            if reason is not None or silent:
                state.missing.setdefault(spec.id, Missing()).add(side, period, reason, silent)
        st = state.metrics.get(spec.id)
        if isinstance(st, RateState):
            den = metrics.get(spec.relative_to or "")
            if den is None or rate_shape:
                continue
            minus = None
            if (
                spec.direction == Direction.DECREASE_IS_BAD
                and settings.errors_metric
                and settings.errors_metric != spec.id
                and settings.errors_metric in metrics
            ):
                minus = metrics[settings.errors_metric]
            add = spec.id in settings.outside_denominator
            _fold_rate(st, spec, mw, den, minus, add, i, period, settings)
        elif isinstance(st, LatencyState):
            tail_id = standing_in.get(spec.id)
            if tail_id is not None and _tail_estimable(metrics[tail_id].spec, counts, i, settings):
                continue
            tail_shape = (
                not shape
                and st.shift.capacity > settings.grace_periods > 0
                and _in_grace(period, state.shift, 2 * settings.grace_periods)
                and _tail_only(metrics, spec, counts, sigmas.get(spec.id), i)
            )
            _fold_latency(st, mw, counts, sigmas.get(spec.id), i, period, shape or tail_shape, settings)
        elif isinstance(st, GaugeState):
            _fold_gauge(st, mw, i, period, shape, settings)
    state.periods += 1


def _results(
    state: JudgeState, metrics: dict[str, MetricWindow], settings: JudgeSettings, threshold: float | None = None
) -> list[Result]:
    # an implicit p50 (read for a tail percentile configured alone) is judged only while its tail is
    # judged through it; otherwise it is no metric test: it neither fails, holds, nor takes budget
    pairs = stand_ins(settings.metrics, [m.spec for m in metrics.values()])
    idle = {
        p50 for p50, tail in pairs.items()
        if p50 in state.metrics and not _judged_through(state, metrics, tail, p50, settings)
    }  # fmt: skip
    # the canary's false-alarm budget is split over the metric tests by their budget weights (a
    # weighted Bonferroni split; even by default): the configured weight, whatever the window says. A tail and
    # its implicit p50 share the tail's weight, half each, at every look (judged or idle alike), so that no
    # test's share moves when the p50 starts or stops standing in: the split holds over the whole run
    configured = {m.id: m.budget_weight for m in settings.metrics}
    weights = {mid: configured.get(mid, metrics[mid].spec.budget_weight) for mid in state.metrics}
    for p50, tail in pairs.items():
        if p50 in weights and tail in weights:
            weights[tail] = weights[p50] = weights[tail] / 2.0
    total = sum(weights.values()) or 1.0
    given = threshold
    optional_ids = {m.id for m in settings.metrics if m.optional}  # configured optional, whatever the window says
    results: list[Result] = []
    for mw in metrics.values():
        spec = mw.spec
        if spec.id in idle:
            continue
        st = state.metrics.get(spec.id)
        share = weights.get(spec.id, 1.0) / total
        threshold = given if given is not None else settings.threshold_for_share(share)
        result: Result | None = None
        if isinstance(st, RateState):
            if spec.relative_to not in metrics:
                result = Result(spec, "inconclusive", f"{spec.id}: its count {spec.relative_to!r} is not read")
            else:
                result = _rate_result(st, spec, settings, threshold)
        elif isinstance(st, LatencyState):
            result = _latency_result(st, spec, metrics, settings, threshold, state.active)
        elif isinstance(st, GaugeState):
            result = _gauge_result(st, spec, settings, threshold)
        if result is not None and result.status == "fail":
            result.confidence = confidence_of(result.evidence, ALTERNATIVES / share)
        optional = spec.optional or spec.id in optional_ids
        gaps = state.missing.get(spec.id)
        missing = [] if optional or gaps is None else gaps.problems()
        if missing and (result is None or result.status != "fail"):
            # a guarded metric without evidence keeps the canary from passing, whatever else says
            result = Result(
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


def _judged_through(
    state: JudgeState, metrics: dict[str, MetricWindow], tail: str, p50: str, settings: JudgeSettings
) -> bool:
    """Whether the tail percentile ``tail`` is judged through its implicit p50 ``p50`` at this look:
    it cannot be estimated (too few invocations per period, in every period or in most of them) and
    is not bounded on its own (:func:`_latency_result`'s "judged through" result, whatever its
    threshold: its own evidence failing it is its own)."""
    st = state.metrics.get(tail)
    if tail not in metrics or not isinstance(st, LatencyState):
        return False
    spec = metrics[tail].spec
    sibling = _sibling_percentile(metrics, spec)
    if sibling is None or sibling.id != p50:
        return False
    result = _latency_result(st, spec, metrics, settings, math.inf, state.active)
    return result.status == "inconclusive" and not result.blocks_healthy


NOT_IN_WINDOW = "not in the window"


def _with_configured(window: CanaryWindow, settings: JudgeSettings) -> CanaryWindow:
    """The window, with every guarded (not ``optional``) metric the settings name (``metrics`` given)
    that it lacks added without a value, every period of both versions a gap "not in the window":
    missing evidence, never a metric that is not guarded."""
    if "metrics" not in settings.model_fields_set:
        return window
    # held under its id or its CloudWatch namespace, name and statistic, as replay tells it (same_metric)
    absent = [
        spec for spec in settings.metrics
        if not spec.optional and not any(same_metric(spec, m.spec) for m in window.metrics)
    ]  # fmt: skip
    if not absent:
        return window
    n = window.periods
    gaps = [DataGap(version=side, periods=list(range(n)), reason=NOT_IN_WINDOW) for side in ("baseline", "canary")]
    added = [MetricWindow(spec=spec, baseline=[None] * n, canary=[None] * n, gaps=gaps) for spec in absent]
    return window.model_copy(update={"metrics": [*window.metrics, *added]})


def _advance(
    state: JudgeState | None, window: CanaryWindow, settings: JudgeSettings, offset: int | None
) -> tuple[JudgeState, dict[str, MetricWindow]]:
    metrics = _resolved(_with_configured(window, settings))
    fingerprint = _fingerprint(settings, [mw.spec for mw in metrics.values()])
    if state is None:
        state = JudgeState(format=_STATE_FORMAT, fingerprint=fingerprint, ids=list(metrics))
        for mw in metrics.values():
            state.present[mw.spec.id] = 0
            new = _new_state(mw.spec, settings)
            if new is not None:
                state.metrics[mw.spec.id] = new
            if mw.spec.kind == MetricKind.LATENCY and _sibling_pair(metrics, mw.spec) is not None:
                state.spreads.setdefault(f"{mw.spec.namespace}/{mw.spec.name}", {})
    elif state.fingerprint != fingerprint:
        raise JudgeStateError(
            "the judge state was built with other settings or metrics: judge the whole window again (state=None)"
        )
    else:
        state = JudgeState.model_validate(state.model_dump())  # a copy: the caller's state is not changed
    start = state.periods if offset is None else offset
    if start > state.periods:
        raise JudgeStateError(
            f"the window starts at period {start} but the state has folded only periods 0..{state.periods - 1}"
        )
    end = start + window.periods
    since = window.periods_since_shift
    if since is not None and 0 < since <= end:
        state.shift = end - since
    for i in range(state.periods - start, window.periods):
        _fold(state, metrics, i, settings)
    return state, metrics


def evaluate_metrics(window: CanaryWindow, settings: JudgeSettings, threshold: float | None = None) -> list[Result]:
    """Every judged metric's test result (the judge's working, exposed for tuning and tests)."""
    state, metrics = _advance(None, window, settings, 0)
    return _results(state, metrics, settings, threshold)


def judge_step(
    state: JudgeState | None, window: CanaryWindow, settings: JudgeSettings, *, offset: int | None = None
) -> tuple[JudgeState, Verdict]:
    """One look of the judge, in O(metrics) per new period whatever the canary's age.

    ``state`` is what the previous look returned (None at the first look, or to start over);
    ``window`` holds the periods read since, as ``CanaryWindow`` periods ``offset`` onwards
    (``offset`` defaults to ``state.periods``: the window holds only new periods; with
    ``offset=0`` a whole window may be passed and the periods already folded are skipped).
    Its ``periods_since_shift`` and gap periods count within the window given. Only settled
    periods should be passed: a folded period is never read again. Returns the new state
    (the given one is not changed) and the verdict on all periods so far, the very verdict
    ``judge_canary`` gives on the whole window::

        state, verdict = judge_step(None, first_window, settings)
        stored = state.dump()                       # a small dict, e.g. on the deployment record
        state, verdict = judge_step(JudgeState.load(stored), new_periods, settings)

    Raises ``JudgeStateError`` when the state does not fit (other settings or metrics, or
    periods skipped).
    """
    state, metrics = _advance(state, window, settings, offset)
    return state, _verdict(state, metrics, settings)


def live_view(window: CanaryWindow) -> CanaryWindow:
    """The window a live look judges (the canary's Assess task, the assessor's verdict, the post-traffic
    hook): without its newest period while that period's datapoints are still arriving
    (:func:`_newest_still_arriving`), else the window itself. Recordings (replay) are judged whole."""
    return _without_newest(window) if _newest_still_arriving(window) else window


def _without_newest(window: CanaryWindow) -> CanaryWindow:
    """The window without its newest period (a traffic shift in that period is not in it)."""
    n = window.periods - 1
    since = window.periods_since_shift
    return CanaryWindow.model_construct(
        interval_seconds=window.interval_seconds,
        canary_weight=window.canary_weight,
        periods_since_shift=since - 1 if since is not None and since > 1 else None,
        metrics=[
            MetricWindow.model_construct(spec=m.spec, baseline=m.baseline[:n], canary=m.canary[:n], gaps=m.gaps)
            for m in window.metrics
        ],
    )


def _newest_still_arriving(window: CanaryWindow) -> bool:
    """The newest period lacks a metric's datapoint for a version that was invoked in it, and CloudWatch
    reported nothing wrong: its datapoints may still be arriving (metrics of the minute that just ended do
    not all land at once). A live look judges it at the next look instead of reading it as missing
    evidence now; a metric silent in earlier periods too is missing as ever (:func:`_fold`)."""
    if window.periods < 2:
        return False
    metrics = {m.spec.id: m for m in window.metrics}
    counts = _count_metric(metrics)
    if counts is None:
        return False
    last = window.periods - 1
    for side in ("canary", "baseline"):
        if not (_at(getattr(counts, side), last) or 0.0) > 0:
            continue
        for m in window.metrics:
            if m is counts or _at(getattr(m, side), last) is not None:
                continue
            if not any(g.version == side and last in g.periods for g in m.gaps):
                return True
    return False


def judge_canary(window: CanaryWindow, settings: JudgeSettings) -> Verdict:
    """Failing, healthy or inconclusive, with a reason per metric, from periods 0..n-1."""
    return judge_step(None, window, settings, offset=0)[1]


def _verdict(state: JudgeState, metrics: dict[str, MetricWindow], settings: JudgeSettings) -> Verdict:
    n = state.periods
    results = _results(state, metrics, settings)
    counts = _count_metric(metrics)
    # evidence: canary traffic
    if counts is not None:
        canary_calls = state.canary_calls
        active = state.active
    else:
        canary_calls = math.nan
        active = max(state.present.values(), default=0)
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
    # how long it has waited; what follows (hold or roll back) is the workflow's to decide and say,
    # as it counts its own assessments after the bake time
    waited = f"; no conclusive evidence after {n} periods" if n > settings.max_inconclusive_periods else ""
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
    # what passing means: bounded within the healthy margins at healthy_confidence (a gauge: no shift found)
    bounded = [r.spec.id for r in results if r.status == "pass" and r.canary_bound is not None]
    unbounded = [r.spec.id for r in results if r.status == "pass" and r.canary_bound is None]
    said = [f"within the healthy margins on {', '.join(bounded)} ({settings.healthy_confidence:.0%} sure)"] * bool(
        bounded
    ) + [f"no shift found on {', '.join(unbounded)}"] * bool(unbounded)
    return Verdict(
        decision=Decision.HEALTHY,
        summary=f"canary {'; '.join(said) or 'not worse on its traffic'} ({traffic})",
        reasons=reasons,
        periods=n,
        judge=JUDGE_NAME,
    )
