"""``deployguard replay [--json] [--config FILE] PATH...``: recorded deployments through the judge.

Every scenario (``deployguard-scenario/1`` files, or folders of them) is judged period
by period with the very judge the assessor runs (``judge_step``: the verdict ``judge_canary``
gives on periods 0..i, its state carried from look to look), as it would have been live:

- the first failing verdict rolls back, at that period;
- otherwise, at the last period, a healthy verdict promotes; an inconclusive one holds
  (or, with ``on_no_evidence: rollback``, rolls back once more than ``max_inconclusive_periods``
  inconclusive verdicts have passed, counted as live: only the looks after the step's bake
  time, the configuration's ``canary.step_duration_seconds``, 300 s by default). No traffic is
  never promoted. The recording is one step baked for its whole length: live, a healthy
  verdict after the bake time promotes (or advances) at once, replay promotes at its end.
- a guarded metric the recording does not hold at all is missing evidence in every period
  ("errors: missing evidence: not in the recording ..."), so it is never promoted. Guarded
  are the ``--config`` settings' metrics when they name them (``judge.metrics`` or
  ``judge.metrics_preset``), otherwise the default metric set of the recording's namespace
  when it holds any of its metrics (AWS/Lambda: invocations, errors, throttles, and Duration,
  recorded when any of its percentiles is; AWS/ApplicationELB: the ``alb`` preset):
  ``scenario.configured_metrics``.

With ``--json`` one line per scenario, as the benchmark's replay contract says:
``{"scenario": NAME, "decision": "rollback|promote|hold", "decided_at": PERIOD, "reason": ...}``;
otherwise a table. ``--config FILE`` (YAML or JSON) holds the judge's settings (or a
whole DeployGuard configuration, whose ``defaults.judge`` is used). Each recording is
judged over its own length as its planned run (the judge's false-alarm budget spread over
it) unless the settings give ``horizon_periods`` themselves (a configuration's canary plan
does not). Errors name the file and the field. Exit codes: 0 judged, 1 an invalid scenario, 2 a
file that cannot be read (or bad settings). Kept light: no numpy, no boto3 on this path.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from deployguard.analysis.judge import JudgeState, judge_step
from deployguard.analysis.scenario import (
    Scenario,
    load_scenario,
    metric_specs_from_scenario,
    scenario_window,
    truncate_window,
    unrecorded_metrics,
)
from deployguard.analysis.settings import JudgeSettings
from deployguard.exceptions import ConfigError, ScenarioError
from deployguard.models import Decision
from deployguard_local.commands import invoke, new_app


@dataclass
class ReplayResult:
    scenario: str
    decision: str  # rollback | promote | hold
    decided_at: int | None
    reason: str
    file: str = ""

    def contract(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "decision": self.decision,
            "decided_at": self.decided_at,
            "reason": self.reason,
        }


def run_settings(scenario: Scenario, settings: JudgeSettings) -> JudgeSettings:
    """The settings a recorded run is judged with: unless ``horizon_periods`` is given, its horizon is
    the recording's length, the run as it was planned (live, the service's canary plan sets it)."""
    return settings.for_run(scenario.intervals)


DEFAULT_STEP_SECONDS = 300  # CanaryPlan.step_duration_seconds's default


def replay_scenario(
    scenario: Scenario, settings: JudgeSettings, step_seconds: int = DEFAULT_STEP_SECONDS
) -> ReplayResult:
    """Judge one scenario period by period, using at period i only periods 0..i.

    Inconclusive verdicts count towards ``on_no_evidence: rollback`` as the canary workflow counts
    them live: only once the step has baked ``step_seconds`` (the look after period i comes
    (i + 1) periods after the traffic shift at period 0)."""
    settings = run_settings(scenario, settings)
    window = scenario_window(
        scenario, metric_specs_from_scenario(scenario, settings), unrecorded_metrics(scenario, settings)
    )
    inconclusive = 0
    verdict = None
    state: JudgeState | None = None
    for i in range(scenario.intervals):
        # the judge's state carried from look to look: each look folds in one new period
        state, verdict = judge_step(state, truncate_window(window, i + 1), settings, offset=0)
        if verdict.decision == Decision.FAILING:
            return ReplayResult(scenario.name, "rollback", i, verdict.summary)
        baked = (i + 1) * scenario.interval_seconds >= step_seconds
        if verdict.decision == Decision.INCONCLUSIVE and baked:
            inconclusive += 1
            if settings.on_no_evidence == "rollback" and inconclusive > settings.max_inconclusive_periods:
                return ReplayResult(
                    scenario.name,
                    "rollback",
                    i,
                    f"no conclusive evidence after {inconclusive} inconclusive looks past the step's"
                    f" {step_seconds} s bake time: {verdict.summary}",
                )
    last = scenario.intervals - 1
    assert verdict is not None
    if verdict.decision == Decision.HEALTHY:
        return ReplayResult(scenario.name, "promote", last, verdict.summary)
    return ReplayResult(scenario.name, "hold", last, verdict.summary)


def load_settings(path: str | Path) -> JudgeSettings:
    """JudgeSettings from a whole configuration file (its ``defaults.judge``), a file with a
    ``judge:`` section, or a bare judge section. Read by the one configuration loader, so
    ``${VAR}``s, unknown keys and errors are what ``invoke`` and ``config validate`` say."""
    return load_run(path)[0]


def load_run(path: str | Path) -> tuple[JudgeSettings, int]:
    """:func:`load_settings`, and the bake time of a canary step in seconds: a whole configuration's
    ``defaults.canary.step_duration_seconds``, else the default plan's."""
    import yaml

    from deployguard.config import check_config, parse_config, read_config_text

    source = str(path)
    text = read_config_text(path)
    try:
        document = json.loads(text) if source.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError):
        document = None  # the loader names the syntax error and its line
    if not isinstance(document, dict) or isinstance(document.get("defaults"), dict) or "services" in document:
        defaults = parse_config(text, source).defaults
        return defaults.judge, defaults.canary.step_duration_seconds
    prefix = "judge" if isinstance(document.get("judge"), dict) and len(document) == 1 else ""
    section = document["judge"] if prefix else document
    wrapped = json.dumps({"defaults": {"judge": section}})
    config, problems = check_config(wrapped, source + ".json")
    if config is not None:
        return config.defaults.judge, DEFAULT_STEP_SECONDS
    first = problems[0]
    inner = (first.field or "").removeprefix("defaults.judge").lstrip(".")
    more = f" ({len(problems) - 1} more)" if len(problems) > 1 else ""
    raise ConfigError(first.message + more, source=source, field=".".join(p for p in (prefix, inner) if p) or None)


def scenario_files(paths: list[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.json") if p.is_file())
        else:
            yield path


def _table(results: list[ReplayResult]) -> str:
    width = max([len("scenario"), *(len(r.scenario) for r in results)])
    lines = [f"{'scenario':<{width}}  {'decision':<8}  {'at':>4}  reason"]
    for r in results:
        at = "-" if r.decided_at is None else str(r.decided_at)
        lines.append(f"{r.scenario:<{width}}  {r.decision:<8}  {at:>4}  {r.reason}")
    counts = {d: sum(1 for r in results if r.decision == d) for d in ("rollback", "promote", "hold")}
    lines.append(
        f"\n{len(results)} scenarios: {counts['rollback']} rolled back, "
        f"{counts['promote']} promoted, {counts['hold']} held"
    )
    return "\n".join(lines)


app = new_app("replay", "Judge recorded deployments (deployguard-scenario/1) period by period, as live.")


@app.command()
def replay(
    paths: Annotated[list[str], typer.Argument(metavar="PATH...", help="scenario files or folders of them")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON line per scenario (the replay contract)")] = False,
    config: Annotated[
        str | None, typer.Option("--config", help="judge settings, or a whole configuration (its defaults.judge)")
    ] = None,
) -> None:
    """Judge each scenario period by period, as the assessor would have live; exit 1 if a file is invalid, 2 if one
    cannot be read."""
    raise typer.Exit(_replay(paths, as_json, config))


def _replay(paths: list[str], as_json: bool, config: str | None) -> int:
    try:
        settings, step_seconds = load_run(config) if config else (JudgeSettings(), DEFAULT_STEP_SECONDS)
    except ConfigError as exc:
        print(f"deployguard replay: {exc}", file=sys.stderr)
        return 2
    results: list[ReplayResult] = []
    invalid = unreadable = 0
    files = list(scenario_files(paths))
    if not files:
        print("deployguard replay: no scenario files in " + ", ".join(paths), file=sys.stderr)
        return 2
    for file in files:
        try:
            result = replay_scenario(load_scenario(file), settings, step_seconds)
        except ScenarioError as exc:
            if isinstance(exc.__cause__, OSError):  # missing, a folder, not allowed: an error, not a bad scenario
                unreadable += 1
            else:
                invalid += 1
            print(f"deployguard replay: {exc}", file=sys.stderr)
            continue
        result.file = str(file)
        if as_json:
            print(json.dumps(result.contract()), flush=False)
        else:
            results.append(result)
    if not as_json and results:
        print(_table(results))
    sys.stdout.flush()
    return 2 if unreadable else 1 if invalid else 0


def main(argv: list[str] | None = None) -> int:
    return invoke(app, "deployguard replay", list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
