"""``make bench``: the canary judge against the reference judges, and the anomaly detector on NAB.

    python -m deployguard_local.bench [--seed 1] [--per-family 40] [--seeds 1,2,3] [--out DIR]

1. Generates the corpus with the shared benchmark's ``canarygen.py`` (``--seed``,
   ``--per-family``; ``--seeds`` runs several) and runs ``judge_bench.py`` on it with
   DeployGuard's judge (``deployguard replay --json``, as a subprocess) beside the
   reference judges, printing its table; then the same on our own families of other
   shapes (``deployguard_local.scenario_families``: 240-period canaries, 5-minute
   periods, 5-10 period canaries, recordings with gaps), and the calibration table:
   stated confidence (0.99, 0.995, 0.999) against the share of healthy canaries of
   both corpora rolled back, which must not exceed 1 - confidence.
2. Runs the anomaly detector over the NAB CloudWatch series (labelled anomaly windows):
   detected windows, and false alarms per series outside the windows, the first 15% of
   each series being a learning period that is not scored (as NAB does).

The shared folder is ``../shared`` beside the repository, or ``$DEPLOYGUARD_SHARED``.
Sections are listed by ``report_sections()``; more can be appended there.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from deployguard_local.scenario_families import write_corpus

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    return Path(os.environ.get("DEPLOYGUARD_SHARED") or REPO_ROOT.parent / "shared").resolve()


# --------------------------------------------------------------------------- canary judge


def judge_command() -> str:
    return f"{sys.executable} -m deployguard_local.replay --json"


def generate_corpus(out: Path, seed: int, per_family: int) -> None:
    gen = shared_dir() / "bench" / "canarygen.py"
    subprocess.run(
        [sys.executable, str(gen), str(out), "--seed", str(seed), "--per-family", str(per_family)],
        check=True,
        capture_output=True,
        text=True,
    )


def run_judge_bench(corpus: Path, out: TextIO, json_out: Path | None = None) -> int:
    bench = shared_dir() / "bench" / "judge_bench.py"
    cmd = [sys.executable, str(bench), str(corpus), "--judge", f"deployguard={judge_command()}"]
    if json_out is not None:
        cmd += ["--json", str(json_out)]
    env = dict(os.environ)
    paths = [str(REPO_ROOT / "src"), str(REPO_ROOT / "layers" / "deployguard")]
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    out.write(proc.stdout)
    if proc.returncode != 0:
        out.write(proc.stderr[-2000:])
    return proc.returncode


def canary_section(seeds: list[int], per_family: int, keep: Path | None, out: TextIO, own_per_family: int = 10) -> int:
    """Per seed: the shared v2 corpus and our own families of other shapes, each scored by
    ``judge_bench.py`` beside the reference judges, then the calibration table on the healthy
    scenarios of both."""
    status = 0
    tally: dict[float, list[int]] = {}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            base = keep / f"seed{seed}" if keep else Path(tmp)
            corpus, own = base / "scenarios", base / "own_families"
            corpus.mkdir(parents=True, exist_ok=True)
            out.write(f"\n== Canary judge: corpus --seed {seed} --per-family {per_family} (judge_bench v2) ==\n")
            generate_corpus(corpus, seed, per_family)
            status |= run_judge_bench(corpus, out, base / "judge_bench.json" if keep else None)
            oracle_at_our_bar(corpus, out)
            out.write(
                f"\n== Canary judge: own families of other shapes (deployguard_local.scenario_families,"
                f" --seed {seed}, {own_per_family} each) ==\n"
            )
            write_corpus(own, seed, own_per_family)
            status |= run_judge_bench(own, out, base / "judge_bench_own.json" if keep else None)
            calibration_report([corpus, own], out, tally=tally)
        out.flush()
    if len(seeds) > 1:
        pooled_calibration(tally, seeds, out)
    return status


def judge_bench_module() -> Any:
    """The shared ``judge_bench.py``, used in place (its oracle and its scoring)."""
    path = shared_dir() / "bench" / "judge_bench.py"
    spec = importlib.util.spec_from_file_location("judge_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evidence_bar(path: Path) -> float:
    """The evidence (nats) DeployGuard's errors or latency test needs to fail this recorded canary at
    the default settings: its share of the false-alarm budget (the metrics' budget weights), the
    alternatives it mixes, and the budget spread over the recording's length."""
    from deployguard.analysis.scenario import load_scenario, metric_specs_from_scenario
    from deployguard.analysis.settings import JudgeSettings
    from deployguard.models import MetricKind

    scenario = load_scenario(path)
    settings = JudgeSettings().for_run(scenario.intervals)
    specs = metric_specs_from_scenario(scenario, settings)
    total = sum(spec.budget_weight for spec in specs if spec.kind != MetricKind.COUNT) or 1.0
    return settings.threshold_for_share(1.0 / total) + settings.horizon_penalty(scenario.intervals - 1)


def oracle_at_our_bar(corpus: Path, out: TextIO) -> dict[str, Any]:
    """The shared benchmark's oracle (it reads the truth: onset, effect, healthy rates; no noise to
    estimate) asked for as much evidence as DeployGuard's tests need, scenario by scenario: how early
    any judge holding DeployGuard's stated confidence could roll back. Its TTD bounds ours."""
    bench = judge_bench_module()
    paths = sorted(corpus.glob("*.json"))
    scenarios = [json.loads(p.read_text()) for p in paths]
    bars = [evidence_bar(p) for p in paths]
    decisions = {sc["name"]: bench.oracle(sc, math.exp(-bar)) for sc, bar in zip(scenarios, bars, strict=True)}
    figures: dict[str, Any] = bench.score(scenarios, decisions)
    ttd = []
    for sc in scenarios:
        decision, at = decisions[sc["name"]]
        if sc["truth"]["expect"] == "rollback" and decision == "rollback" and at is not None:
            ttd.append(at - sc["truth"]["onset"] + 1)
    slow = sum(1 for t in ttd if t >= 6)
    out.write(
        f"\nlimit: the oracle asked for DeployGuard's evidence bar ({min(bars):.1f}-{max(bars):.1f} nats by scenario):"
        f" detection {figures['detection_rate']:.3f}, TTD median / p90 {figures['ttd_median']:.0f} /"
        f" {figures['ttd_p90']:.1f}, {slow} of {len(ttd)} detections taking 6 periods or more\n"
    )
    return figures


CALIBRATION_LEVELS = (0.99, 0.995, 0.999)


def _replay_healthy(job: tuple[str, float]) -> str:
    from deployguard.analysis.scenario import load_scenario
    from deployguard.analysis.settings import JudgeSettings
    from deployguard_local.replay import replay_scenario

    path, confidence = job
    return replay_scenario(load_scenario(path), JudgeSettings(confidence=confidence)).decision


def _replay_all(jobs: list[tuple[str, float]]) -> list[str]:
    if len(jobs) < 8:
        return [_replay_healthy(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        return list(pool.map(_replay_healthy, jobs, chunksize=8))


def calibration_report(
    corpora: list[Path], out: TextIO, levels: tuple[float, ...] = CALIBRATION_LEVELS,
    tally: dict[float, list[int]] | None = None,
) -> bool:  # fmt: skip
    """Stated confidence against the observed share of healthy canaries rolled back.

    A healthy canary (``truth.expect`` promote) rolled back is a false alarm; at confidence
    c the judge promises at most 1 - c of them, over the whole canary however long. ``tally``
    gathers, per level, the rollbacks and the healthy canaries (several seeds pooled).
    """
    healthy = [
        str(p)
        for corpus in corpora
        for p in sorted(corpus.glob("*.json"))
        if json.loads(p.read_text(encoding="utf-8")).get("truth", {}).get("expect") == "promote"
    ]
    started = time.perf_counter()
    # a higher confidence only raises the threshold: what the lowest level did not roll back,
    # no higher level rolls back, and its final verdict is the same; only rollbacks are re-run
    decisions = {levels[0]: _replay_all([(path, levels[0]) for path in healthy])}
    for level in levels[1:]:
        previous = decisions[levels[levels.index(level) - 1]]
        again = [path for path, d in zip(healthy, previous, strict=True) if d == "rollback"]
        redone = dict(zip(again, _replay_all([(path, level) for path in again]), strict=True))
        decisions[level] = [redone.get(path, d) for path, d in zip(healthy, previous, strict=True)]
    out.write(
        f"\n== Calibration: stated confidence vs false rollbacks on {len(healthy)} healthy canaries "
        f"({time.perf_counter() - started:.0f}s) ==\n"
        f"{'confidence':>10}  {'allowed (1-c)':>13}  {'rolled back':>11}  {'share':>6}  {'held':>5}  within\n"
    )
    ok = True
    for level in levels:
        mine = decisions[level]
        false = sum(1 for d in mine if d == "rollback")
        held = sum(1 for d in mine if d == "hold")
        share = false / max(1, len(healthy))
        good = share <= 1.0 - level
        if tally is not None:
            counts = tally.setdefault(level, [0, 0])
            counts[0], counts[1] = counts[0] + false, counts[1] + len(healthy)
        ok &= good
        out.write(
            f"{level:>10}  {1 - level:>13.4f}  {false:>5}/{len(healthy):<5}  {share:>6.4f}  {held:>5}  "
            f"{'yes' if good else 'NO'}\n"
        )
    return ok


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
        for i in range(k, n + 1)
    ]
    top = max(log)
    return min(1.0, math.exp(top) * sum(math.exp(x - top) for x in log))


def binomial_upper(k: int, n: int, level: float = 0.95) -> float:
    """The exact (Clopper-Pearson) one-sided upper bound on a share seen k times in n."""
    if n <= 0 or k >= n:
        return 1.0
    lo, hi = k / n, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if binomial_tail(k + 1, n, mid) < level:  # P(X <= k) > 1 - level: mid still plausible
            lo = mid
        else:
            hi = mid
    return hi


def pooled_calibration(tally: dict[float, list[int]], seeds: list[int], out: TextIO) -> None:
    """The calibration table over every seed at once: the rolled-back share with its exact 95% upper
    bound, and the chance of seeing at least as many at exactly 1 - c (a share within its budget is
    one this chance does not make implausible: a seed of 280 canaries sees 0 or 1 at 0.999 by chance)."""
    out.write(
        f"\n== Calibration over seeds {','.join(map(str, seeds))} at once ==\n"
        f"{'confidence':>10}  {'allowed (1-c)':>13}  {'rolled back':>11}  {'share':>6}  {'95% upper':>9}  "
        f"P(>= seen | 1-c)\n"
    )
    for level, (false, total) in sorted(tally.items()):
        share = false / max(1, total)
        out.write(
            f"{level:>10}  {1 - level:>13.4f}  {false:>5}/{total:<5}  {share:>6.4f}  "
            f"{binomial_upper(false, total):>9.4f}  {binomial_tail(false, total, 1 - level):.3f}\n"
        )


# --------------------------------------------------------------------------- anomaly detector on NAB


def _read_series(path: Path) -> list[tuple[datetime, float]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [(datetime.fromisoformat(r["timestamp"]), float(r["value"])) for r in csv.DictReader(fh)]


def nab_report(out: TextIO, threshold: float = 6.0) -> dict[str, object]:
    """Detected anomaly windows and false alarms per series of the NAB CloudWatch data."""
    from deployguard.analysis.anomaly import alarms, stream_scores

    root = shared_dir() / "datasets" / "nab"
    windows = json.loads((root / "windows.json").read_text(encoding="utf-8"))
    out.write(f"\n== Anomaly detector on NAB realAWSCloudwatch ({len(windows)} series, threshold {threshold:g}) ==\n")
    out.write(f"{'series':<44}{'windows':>9}{'detected':>10}{'false alarms':>14}\n")
    total_w = total_d = total_fa = 0
    started = time.perf_counter()
    rows = []
    for name, spans in sorted(windows.items()):
        series = _read_series(root / name)
        scores = stream_scores(series)
        raised = alarms(scores, threshold)
        learn = int(0.15 * len(series))  # NAB's probationary period: not scored
        labelled = [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in spans]

        def inside(i: int, labelled: list[tuple[datetime, datetime]] = labelled, series: list = series) -> bool:
            return any(a <= series[i][0] <= b for a, b in labelled)

        detected = sum(1 for a, b in labelled if any(a <= series[i][0] <= b for i in raised))
        false_alarms = sum(1 for i in raised if i >= learn and not inside(i))
        total_w, total_d, total_fa = total_w + len(labelled), total_d + detected, total_fa + false_alarms
        short = name.split("/")[-1].removesuffix(".csv")
        rows.append({"series": short, "windows": len(labelled), "detected": detected, "false_alarms": false_alarms})
        out.write(f"{short:<44}{len(labelled):>9}{detected:>10}{false_alarms:>14}\n")
    out.write(
        f"{'total':<44}{total_w:>9}{total_d:>10}{total_fa:>14}\n"
        f"detected windows {total_d}/{total_w} ({total_d / max(1, total_w):.0%}); "
        f"false alarms {total_fa / max(1, len(windows)):.1f} per series "
        f"({time.perf_counter() - started:.1f}s)\n"
    )
    return {"windows": total_w, "detected": total_d, "false_alarms": total_fa, "series": rows}


def anomaly_section(out: TextIO) -> int:
    nab_report(out)
    return 0


# --------------------------------------------------------------------------- sections


def report_sections(args: argparse.Namespace) -> list[tuple[str, Callable[[TextIO], int]]]:
    """The sections ``make bench`` prints, in order; append more here."""
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    keep = Path(args.out) if args.out else None
    return [
        ("canary judge", lambda out: canary_section(seeds, args.per_family, keep, out)),
        ("anomaly detector (NAB)", anomaly_section),
        ("cloudwatch batch read", batch_read_section),
    ]


def batch_read_section(out: TextIO) -> int:
    """GetMetricData calls and wall time of the assessor over 200 active deployments x 8 metrics."""
    import logging

    from deployguard_local.bench_batch import report, run_batch_read

    # the bench's deployments have no Lambda function behind them: the assessor's warnings
    # about it (one per deployment) are expected here and would only drown the figures
    logging.disable(logging.WARNING)
    try:
        out.write(report(run_batch_read()) + "\n")
    finally:
        logging.disable(logging.NOTSET)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deployguard_local.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    parser.add_argument("--seeds", help="several seeds, comma-separated (e.g. 1,2,3); overrides --seed")
    parser.add_argument(
        "--per-family", type=int, default=40, help="scenarios per family (default 40: 720 in all, 18 families)"
    )
    parser.add_argument("--out", help="keep the corpora and judge_bench JSON here (default: temporary)")
    parser.add_argument("--only", help="run only the sections whose name contains this")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (shared_dir() / "bench" / "judge_bench.py").is_file():
        print(f"bench: the shared benchmark is not at {shared_dir()} (set DEPLOYGUARD_SHARED)", file=sys.stderr)
        return 2
    status = 0
    for name, section in report_sections(args):
        if args.only and args.only not in name:
            continue
        status |= section(sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())
