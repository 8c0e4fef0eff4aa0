"""The judge's evidence, kept incrementally: one compact state per metric, folded forward a period
at a time, so that a look costs O(metrics) whatever the canary's age.

Every statistic here is sequential: a period's evidence is weighed with the noise estimated
from the periods up to it (a plug-in CUSUM), and the noise itself is estimated robustly on a
sliding window of the last ``WINDOW`` periods (never below the canary's life-long
estimate), so the state stays small and of one size whatever the canary's age (every number
a float32, packed at full capacity by ``packing``) and the whole canary's judgement is the
fold of its periods.
``judge.judge_canary`` (a whole window) and ``judge.judge_step`` (new periods on a stored
state) run the very same fold, so they give the same verdicts.

Pure statistics: no AWS, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from deployguard.analysis.packing import Packer, Unpacker, f32
from deployguard.analysis.settings import ALTERNATIVES
from deployguard.analysis.stats import median
from deployguard.models import MetricSpec, VerdictReason

if TYPE_CHECKING:
    from deployguard.analysis.settings import JudgeSettings

WINDOW = 12  # periods the robust noise estimates look back over
GAUGE_MIN_PAIRS = 4  # pairs a gauge needs before its noise can be told


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- the CUSUM


class Cusum(_State):
    """Page's CUSUM on every alternative at once, with its highest point so far.

    ``runs[j]`` holds alternative j's running statistic and the period its run began (and,
    with a second opinion, the run's two largest increments); an alternative at zero has no
    entry. Run sums (whatever the test needs to describe a failing run) are kept as prefix
    sums ``total``, with the prefix at each run's start in ``marks``. The evidence is the
    mixture of the alternatives' statistics (``log sum_j w_j exp(S_j)``, the weights ``w_j``
    given by ``offsets`` as ``log(1 / w_j) - log(ALTERNATIVES)``, even over the grid by default), and the
    failing run is that of the alternative that weighs most in it. With a second opinion
    the largest increment of a run counts at most twice the second largest: one odd period
    cannot fail a release alone, a confirmed one fails it at once.
    """

    width: int
    second_opinion: bool = False
    runs: dict[int, list[float]] = Field(default_factory=dict)  # j -> [s, start(, top1, top2)]
    total: list[float]
    marks: dict[int, list[float]] = Field(default_factory=dict)
    best: float = 0.0
    best_j: int = -1
    best_start: int = 0
    best_at: int = -1
    best_run: list[float] = Field(default_factory=list)

    @classmethod
    def new(cls, width: int, run_width: int, second_opinion: bool = False) -> Cusum:
        return cls(width=width, second_opinion=second_opinion, total=[0.0] * run_width)

    def push(self, period: int, inc: list[float], extra: float, run_row: list[float],
             offsets: list[float] | None = None) -> None:  # fmt: skip
        before = self.total
        self.total = [f32(a + b) for a, b in zip(self.total, run_row, strict=True)]
        terms: list[float] = []  # each alternative's weighted evidence, those at zero included (ratio 1)
        lead, lead_value = -1, -math.inf
        even = math.log(self.width / ALTERNATIVES)  # the threshold's budget spread over this grid
        for j, x in enumerate(inc):
            off = (offsets[j] if offsets else even) + extra
            run = self.runs.get(j)
            s = f32((run[0] if run else 0.0) + x)
            if s <= 0.0:
                self.runs.pop(j, None)
                terms.append(-off)
                continue
            if run is None:
                run = [0.0, float(period), 0.0, 0.0] if self.second_opinion else [0.0, float(period)]
                self.runs[j] = run
                self.marks.setdefault(period, before)
            run[0] = s
            alone = 0.0
            if self.second_opinion:
                x = f32(x)
                if x > run[2]:
                    run[2], run[3] = x, run[2]
                elif x > run[3]:
                    run[3] = x
                alone = max(0.0, run[2] - 2.0 * run[3])
            terms.append(s - alone - off)
            if terms[-1] > lead_value:
                lead, lead_value = j, terms[-1]
        # the evidence is the mixture over the alternatives (their likelihood ratios averaged with
        # their weights), not the largest alone: alternatives near the truth all speak for it
        top = max(terms)
        value = f32(top + math.log(sum(math.exp(t - top) for t in terms)))
        if lead >= 0 and value > self.best:
            start = int(self.runs[lead][1])
            self.best, self.best_j, self.best_start, self.best_at = value, lead, start, period
            self.best_run = [f32(a - b) for a, b in zip(self.total, self.marks[start], strict=True)]
        live = {int(run[1]) for run in self.runs.values()}
        for p in [p for p in self.marks if p not in live]:
            del self.marks[p]

    def pack(self, out: Packer) -> None:
        """The CUSUM at its full size: its shape, its highest point, and every alternative's run
        (zeros for those at zero), each with the prefix sums at its start."""
        run_width = len(self.total)
        out.extend([self.width, run_width, float(self.second_opinion)], 3)
        out.extend([self.best, self.best_j, self.best_start, self.best_at], 4)
        out.extend(self.best_run, run_width)
        out.extend(self.total, run_width)
        size = 4 if self.second_opinion else 2
        for j in range(self.width):
            run = self.runs.get(j)
            out.extend(run or [], size)
            out.extend(self.marks[int(run[1])] if run else [], run_width)

    @classmethod
    def unpack(cls, data: Unpacker) -> Cusum:
        """A CUSUM :meth:`pack` wrote."""
        width, run_width, second = data.take_int(), data.take_int(), bool(data.take_int())
        best, best_j, best_start, best_at = data.take(), data.take_int(), data.take_int(), data.take_int()
        best_run = data.take_list(run_width)
        cusum = cls(
            width=width, second_opinion=second, total=data.take_list(run_width), best=best, best_j=best_j,
            best_start=best_start, best_at=best_at, best_run=best_run if best_j >= 0 else [],
        )  # fmt: skip
        size = 4 if second else 2
        for j in range(width):
            run, mark = data.take_list(size), data.take_list(run_width)
            if run[0] > 0.0:
                cusum.runs[j] = run
                cusum.marks.setdefault(int(run[1]), mark)
        return cusum


# --------------------------------------------------------------------------- a test's result


@dataclass
class Result:
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
    canary_bound: float | None = None  # a pass: how bad the canary may be at the stated confidence

    def reason(self) -> VerdictReason:
        return VerdictReason(
            metric_id=self.spec.id,
            status=self.status,
            effect=None if self.effect is None or not math.isfinite(self.effect) else round(self.effect, 4),
            baseline_value=self.baseline_value,
            canary_value=self.canary_value,
            confidence=None if self.confidence is None else round(min(1.0, max(0.0, self.confidence)), 6),
            canary_bound=self.canary_bound,
            message=self.message,
        )


def pct(x: float) -> str:
    return f"{100 * x:.3g}%"


def signed_pct(x: float) -> str:
    """A relative change as the reasons and the reports show it: +26.3%, -0.7%, +2583%."""
    if not math.isfinite(x):
        return "from none" if x > 0 else "-"
    return f"{100 * x:+.0f}%" if abs(x) >= 1.0 else f"{100 * x:+.1f}%"


# --------------------------------------------------------------------------- missing evidence


def _add_range(ranges: list[list[int]], p: int) -> None:
    if ranges and ranges[-1][1] == p - 1:
        ranges[-1][1] = p
    elif not ranges or ranges[-1][1] < p:
        ranges.append([p, p])


def format_ranges(ranges: list[list[int]]) -> str:
    """[[3, 5], [9, 9]] -> '3-5, 9'."""
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges)


def periods_of(ranges: list[list[int]]) -> str:
    """[[3, 5], [9, 9]] -> 'periods 3-5, 9'; [[10, 10]] -> 'period 10'."""
    one = len(ranges) == 1 and ranges[0][0] == ranges[0][1]
    return f"{'period' if one else 'periods'} {format_ranges(ranges)}"


class Missing(_State):
    """Periods a guarded metric lacks evidence for, per version: reported by CloudWatch (by
    reason), or silent (no datapoint although the version was invoked: missing, never zero)."""

    reported: dict[str, dict[str, list[list[int]]]] = Field(default_factory=dict)
    silent: dict[str, list[list[int]]] = Field(default_factory=dict)

    def add(self, side: str, period: int, reason: str | None, silent: bool) -> None:
        if reason is not None:
            _add_range(self.reported.setdefault(side, {}).setdefault(reason, []), period)
        elif silent:
            _add_range(self.silent.setdefault(side, []), period)

    def problems(self) -> list[str]:
        out = []
        for side in ("canary", "baseline"):
            for reason, ranges in self.reported.get(side, {}).items():
                out.append(f"{reason} for the {side}'s {periods_of(ranges)}")
            if self.silent.get(side):
                out.append(
                    f"no datapoint for the {side} in {periods_of(self.silent[side])} although it was"
                    " invoked (missing, not zero)"
                )
        return out


# --------------------------------------------------------------------------- noise estimates


def _centred(pairs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Steps less their median: a steady trend (a creeping regression) is no noise."""
    if len(pairs) < 3:
        return pairs
    mid = median([d for d, _ in pairs])
    return [(d - mid, s) for d, s in pairs]


_CHI2_1_MEDIAN = 0.4549  # median of a chi-square with one degree of freedom


def _robust_var(pairs: list[tuple[float, float]]) -> float | None:
    """Variance beyond sampling noise of steps, from (step, its sampling variance) pairs, robustly:
    the tau^2 at which the (centred) steps, each standardised by its own sampling variance plus
    tau^2, have the median square of a standard normal (0 when sampling noise explains them).
    Each step keeps its own sampling noise: a step between two quiet periods is not read as
    wobble because another pair of periods had little traffic."""
    if len(pairs) < 2:
        return None
    pairs = _centred(pairs)

    def excess(t: float) -> float:
        return median([d * d / (s + t) if s + t > 0 else math.inf for d, s in pairs]) - _CHI2_1_MEDIAN

    if excess(0.0) <= 0.0:
        return 0.0
    lo, hi = 0.0, max(d * d for d, _ in pairs) / _CHI2_1_MEDIAN + 1e-12
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if excess(mid) > 0.0:
            lo = mid
        else:
            hi = mid
    return hi


def _spike_var(rows: list[list[float]]) -> float:
    """Variance of one-period spikes beyond sampling noise, from each period's departure from the
    mean of its two neighbours: a spike departs by its whole size, a trend (a creeping
    regression) not at all, a level shift by half its size twice (the two largest are left
    out). Unlike a median this keeps rare spikes in the noise, so a version that spikes now
    and then is not read as a regression when it does."""
    if len(rows) < 5:
        return 0.0
    excess = []
    for j in range(1, len(rows) - 1):
        r = rows[j][0] - 0.5 * (rows[j - 1][0] + rows[j + 1][0])
        excess.append(r * r - rows[j][1] - 0.25 * (rows[j - 1][1] + rows[j + 1][1]))
    kept = sorted(excess)[:-2]
    return max(0.0, sum(kept) / len(kept) / 1.5)


def wobble_estimate(steady: list[list[float]], baseline: list[list[float]]) -> list[float]:
    """The data's estimate of the paired difference's long-run variance beyond sampling noise,
    and how many steps tell it, ``[long_run, m]`` (empty before any step), from the
    period-to-period steps of both versions' own wobble over the last periods (``steady``:
    paired differences and their sampling variances outside the grace periods; ``baseline``:
    the baseline's own log values and sampling variances).

    Each step of canary minus baseline is the canary's own step less the baseline's: what hits
    both versions cancels, a regression moves it once (a median leaves it out). Versions wobble
    on their own with some memory (minute-to-minute changes that revert over a few minutes):
    the lag-1 and lag-2 steps give the memory rho, and a sum of L periods varies like
    L tau^2 (1 + rho) / (1 - rho), which is what the CUSUM adds up.
    """
    lag1 = [(steady[j + 1][0] - steady[j][0], steady[j][1] + steady[j + 1][1]) for j in range(len(steady) - 1)]
    lag2 = [(steady[j + 2][0] - steady[j][0], steady[j][1] + steady[j + 2][1]) for j in range(len(steady) - 2)]
    # the baseline has no cold start: its own steps tell from the first periods on (a
    # difference of two versions wobbles like two of them: sqrt(2) of one)
    own = _centred(
        [
            (math.sqrt(2.0) * (baseline[j + 1][0] - baseline[j][0]), 2.0 * (baseline[j][1] + baseline[j + 1][1]))
            for j in range(len(baseline) - 1)
        ]
    )
    lag1 = _centred(lag1)
    v1 = _robust_var(lag1 + own)
    if v1 is None:
        return []
    # memory: at least a prior 0.5 (a short series cannot tell much less from much more,
    # and too little would make a slow wander look like a shift), more when the lag-2 steps of
    # both series show it (the baseline's own too: a canary's creeping regression is no memory)
    rho = 0.5
    own_lag2 = [
        (math.sqrt(2.0) * (baseline[j + 2][0] - baseline[j][0]), 2.0 * (baseline[j][1] + baseline[j + 2][1]))
        for j in range(len(baseline) - 2)
    ]
    v2 = _robust_var(_centred(lag2) + _centred(own_lag2))
    if v2 is not None and v1 > 0 and len(lag2) + len(own_lag2) >= 16:
        rho = max(rho, min(0.7, v2 / v1 - 1.0))
    tau2 = v1 / (2.0 * (1.0 - rho))
    spikes = max(0.0, _spike_var(steady) - tau2)  # one-period spikes have no memory
    long_run = tau2 * (1.0 + rho) / (1.0 - rho) + spikes
    return [long_run, float(len(lag1) + len(own)) / 2.0]


def between_period_variance(estimate: list[float], prior: float) -> float:
    """Long-run variance of the paired difference beyond sampling noise: the data's
    :func:`wobble_estimate` with a ``prior`` (the sampling noise of the period itself: before
    the data tells, a version is taken to wobble as much as it is sampled).

    The prior fades fast as the data's own steps come in (it speaks for the first periods
    only); an estimate from few steps is itself uncertain: widen it as a Student t would
    (few degrees of freedom, heavier tails), less and less as the periods add up.
    """
    if not estimate:
        return prior
    long_run, m = estimate
    prior_weight = 2.0
    fading = (prior_weight / (prior_weight + m)) ** 2
    return (fading * prior + m * long_run / (prior_weight + m)) * (1.0 + 3.0 / (prior_weight + m))


def push_window(window: list[list[float]], row: list[float], size: int = WINDOW) -> None:
    window.append([f32(x) for x in row])
    if len(window) > size:
        del window[0]


# --------------------------------------------------------------------------- shift tests


def shift_increments(d: float, v: float, delta0: float, grid: list[float], dof: float | None = None) -> list[float]:
    """Log-likelihood ratios of one period's difference ``d`` (noise scale squared ``v``) under each
    shift in ``grid`` against ``delta0``: Gaussian, or with ``dof`` a Student t of that many degrees
    of freedom (heavy tails: a period far beyond the noise weighs as the log of its distance, not
    its square, so a one-off spike is not read as the shift it happens to match)."""
    if dof is None:
        return [(delta - delta0) * (d - 0.5 * (delta + delta0)) / v for delta in grid]
    half, scale = 0.5 * (dof + 1.0), (dof + 1.0) * v
    null = math.log1p((d - delta0) ** 2 / scale)
    return [half * (null - math.log1p((d - delta) ** 2 / scale)) for delta in grid]


class ShiftEvidence(_State):
    """A CUSUM whose periods just after a traffic shift are told apart by shape: a cold start
    decays, a regression persists. Their evidence counts only as far as a later period
    confirms it (nothing until that period is seen): the first period after them, or, when
    more than ``capacity`` (the grace periods) await at once because the traffic shifted again
    meanwhile, the newest one for the oldest."""

    cusum: Cusum
    capacity: int = Field(default=1, ge=1)
    pending: list[tuple[int, list[float], list[float]]] = Field(default_factory=list)

    def push(self, period: int, inc: list[float], run_row: list[float], shape: bool, penalty: float,
             settings: JudgeSettings, offsets: list[float] | None = None) -> None:  # fmt: skip
        """Fold one period's increments (``offsets``: the alternatives' weights, as :meth:`Cusum.push`)."""
        last = inc
        if shape:
            if len(self.pending) >= self.capacity:
                p, inc_p, row_p = self.pending.pop(0)
                self.cusum.push(p, self._confirmed(inc_p, inc), settings.horizon_penalty(p), row_p, offsets)
            self.pending.append((period, [f32(x) for x in inc], [f32(x) for x in run_row]))
            return
        confirmed = []
        for p, inc_p, row_p in reversed(self.pending):  # each as far as every later period confirms it
            confirmed.append((p, [min(a, b) for a, b in zip(inc_p, inc, strict=True)], row_p))
            inc = [min(a, b) for a, b in zip(inc_p, inc, strict=True)]
        for p, capped, row_p in reversed(confirmed):
            self.cusum.push(p, capped, settings.horizon_penalty(p), row_p, offsets)
        self.pending = []
        self.cusum.push(period, last, penalty, run_row, offsets)

    def _confirmed(self, inc_p: list[float], inc: list[float]) -> list[float]:
        """The oldest awaiting period's increments as far as every later period (awaiting, and ``inc``'s)
        confirms them."""
        for _, later, _ in self.pending:
            inc = [min(a, b) for a, b in zip(later, inc, strict=True)]
        return [min(a, b) for a, b in zip(inc_p, inc, strict=True)]

    def settled(self, settings: JudgeSettings, offsets: list[float] | None = None) -> Cusum:
        """The CUSUM as of now: periods still awaiting confirmation count as far as zero."""
        if not self.pending:
            return self.cusum
        cusum = self.cusum.model_copy(deep=True)
        for p, inc_p, row_p in self.pending:
            cusum.push(p, [min(a, 0.0) for a in inc_p], settings.horizon_penalty(p), row_p, offsets)
        return cusum

    def pack(self, out: Packer) -> None:
        self.cusum.pack(out)
        out.add(self.capacity)
        out.rows([[p, *inc, *row] for p, inc, row in self.pending], self.capacity, self._row_width)

    @property
    def _row_width(self) -> int:
        return 1 + self.cusum.width + len(self.cusum.total)

    @classmethod
    def unpack(cls, data: Unpacker) -> ShiftEvidence:
        cusum = Cusum.unpack(data)
        evidence = cls(cusum=cusum, capacity=data.take_int())
        width = cusum.width
        evidence.pending = [
            (int(row[0]), row[1 : 1 + width], row[1 + width :])
            for row in data.rows(evidence.capacity, evidence._row_width)
        ]
        return evidence


def confidence_of(evidence: float, alternatives: float) -> float:
    """How sure a failing verdict is: the threshold of confidence c is reached at c (the union
    over the alternatives tried at once, the test's share of the budget and the canary's length already
    paid for)."""
    return max(0.0, 1.0 - alternatives * math.exp(-evidence)) if evidence > 0 else 0.0


# --------------------------------------------------------------------------- rates

RATE_WOBBLE_WIDTH = 7  # last rate, last count, and the steps' sums (see ``fold_rate_wobble``)
RATE_WOBBLE_PRIOR_STEPS = 8.0  # the prior (no wobble) weighs as this many steps


def fold_rate_wobble(spread: list[float], k: float, n: float) -> None:
    """Fold one period of the baseline (``k`` events of ``n``) into its own period-to-period spread
    of the rate, for :func:`rate_wobble`.

    A version's event rate wobbles on its own from period to period (events that come in bursts
    beyond their rate: counts over-dispersed): p times a factor of mean 1 and variance tau^2. A
    step of its rate between two periods then varies by the binomial noise at their pooled rate
    plus 2 p^2 tau^2, and the product of the two rates averages p^2 (their wobbles are apart):
    the excess of the squared steps over their binomial noise, over twice the products, tells
    tau^2. A rate that moved earlier does not count; two periods without events tell nothing.
    Kept: the sums of the excesses and of the products, and the largest excess with its product."""
    last_rate, last_n, excess, scale, top, top_scale, steps = spread
    rate = k / n
    pooled = (k + last_rate * last_n) / (n + last_n)
    if last_n > 0 and 0.0 < pooled < 1.0:
        step = (rate - last_rate) ** 2 - pooled * (1.0 - pooled) * (1.0 / n + 1.0 / last_n)
        excess, scale, steps = excess + step, scale + 2.0 * rate * last_rate, steps + 1.0
        if step > top:
            top, top_scale = step, 2.0 * rate * last_rate
    spread[:] = [f32(x) for x in (rate, n, excess, scale, top, top_scale)] + [steps]


def rate_wobble(spread: list[float]) -> float:
    """tau^2, the variance of a version's own rate wobble per period relative to its rate (0 for
    binomial counts), from the baseline's own steps (:func:`fold_rate_wobble`), its largest left
    out (a rate that moved once, a shared incident's start), with a prior of none that weighs as
    ``RATE_WOBBLE_PRIOR_STEPS`` steps. The baseline tells how the service's counts wobble; the
    canary's own bursts are not read as wobble, since bursts of canary errors (intermittent
    failures) are the regression itself. Leaving out the largest biases it low: on binomial
    counts it is mostly 0."""
    _, _, excess, scale, top, top_scale, steps = spread[:RATE_WOBBLE_WIDTH]
    excess, scale, steps = excess - top, scale - top_scale, steps - 1.0
    if excess <= 0.0 or scale <= 0.0 or steps < 1.0:
        return 0.0
    return excess / scale * steps / (steps + RATE_WOBBLE_PRIOR_STEPS)


class RateState(_State):
    """Conditional binomial CUSUM on the relative risk of an event, canary vs baseline.

    Given the events of both versions in a period, the canary's share of them follows a
    binomial law whose parameter depends only on the canary's relative risk and the two
    denominators, so what hits both versions in that period cancels out.
    """

    kind: Literal["rate"]
    cusum: Cusum
    rows: int = 0
    restarts: int = 0  # periods in which the baseline had events (a new failure mode's run starts after one)
    # the baseline's own period-to-period spread of the rate (``fold_rate_wobble``)
    spread: list[float] = Field(default_factory=lambda: [0.0] * RATE_WOBBLE_WIDTH)

    @property
    def totals(self) -> list[float]:
        """Every period so far: k_c, n_c, k_b, n_b (the CUSUM's running sums)."""
        return self.cusum.total

    def pack(self, out: Packer) -> None:
        self.cusum.pack(out)
        out.add(self.rows)
        out.add(self.restarts)
        out.extend(self.spread, RATE_WOBBLE_WIDTH)

    @classmethod
    def unpack(cls, data: Unpacker) -> RateState:
        cusum = Cusum.unpack(data)
        rows, restarts = data.take_int(), data.take_int()
        return cls(kind="rate", cusum=cusum, rows=rows, restarts=restarts, spread=data.take_list(RATE_WOBBLE_WIDTH))


STEADY_SUMS = 8


class LatencyState(_State):
    """Paired log differences canary minus baseline, period by period; their noise is the
    sampling noise of the statistic at that traffic plus each version's own between-period
    wobble, estimated on the last periods."""

    kind: Literal["latency"]
    shift: ShiftEvidence
    rows: int = 0
    # steady rows (outside the grace periods): count, sum d/v, sum 1/v, and with p = 1 / sampling
    # variance: sum d p, sum p, sum p^2, and the two versions' log values weighted alike (sum p log c,
    # sum p log b: the values the mean difference is of)
    steady_sums: list[float] = Field(default_factory=lambda: [0.0] * STEADY_SUMS)
    steady: list[list[float]] = Field(default_factory=list)  # last steady rows: d, sampling variance
    baseline: list[list[float]] = Field(default_factory=list)  # last rows: baseline log value, sampling variance
    wobble: list[float] = Field(default_factory=list)  # the data's estimate: long-run variance, steps
    life: list[float] = Field(default_factory=lambda: [0.0, 0.0])  # every estimate so far: sum m x long-run, sum m

    def pack(self, out: Packer) -> None:
        self.shift.pack(out)
        out.add(self.rows)
        out.extend(self.steady_sums, STEADY_SUMS)
        out.rows(self.steady, WINDOW, 2)
        out.rows(self.baseline, WINDOW + 1, 2)
        out.rows([self.wobble] if self.wobble else [], 1, 2)
        out.extend(self.life, 2)

    @classmethod
    def unpack(cls, data: Unpacker) -> LatencyState:
        shift, rows, sums = ShiftEvidence.unpack(data), data.take_int(), data.take_list(STEADY_SUMS)
        steady, baseline, wobble = data.rows(WINDOW, 2), data.rows(WINDOW + 1, 2), data.rows(1, 2)
        return cls(
            kind="latency", shift=shift, rows=rows, steady_sums=sums, steady=steady, baseline=baseline,
            wobble=wobble[0] if wobble else [], life=data.take_list(2),
        )  # fmt: skip


class GaugeState(_State):
    """Paired differences with a noise level estimated robustly on the last periods."""

    kind: Literal["gauge"]
    shift: ShiftEvidence
    pairs: int = 0
    sums: list[float] = Field(default_factory=lambda: [0.0, 0.0])  # sum canary, sum baseline
    recent: list[list[float]] = Field(default_factory=list)  # last pairs: difference, |baseline|
    waiting: list[list[float]] = Field(default_factory=list)  # the first pairs, before the noise can be told

    def pack(self, out: Packer) -> None:
        self.shift.pack(out)
        out.add(self.pairs)
        out.extend(self.sums, 2)
        out.rows(self.recent, WINDOW, 2)
        out.rows(self.waiting, GAUGE_MIN_PAIRS, 3)

    @classmethod
    def unpack(cls, data: Unpacker) -> GaugeState:
        shift, pairs, sums = ShiftEvidence.unpack(data), data.take_int(), data.take_list(2)
        recent, waiting = data.rows(WINDOW, 2), data.rows(GAUGE_MIN_PAIRS, 3)
        return cls(kind="gauge", shift=shift, pairs=pairs, sums=sums, recent=recent, waiting=waiting)
