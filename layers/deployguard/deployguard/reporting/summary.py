"""A period's summary (daily, weekly, ``deployguard summary``) as Markdown."""

from __future__ import annotations

from deployguard.readmodels import Summary
from deployguard.readmodels.summary import GroupCount, PeriodFigures


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def _trend(now: float | None, before: float | None, fmt: str = "{:+.0%}") -> str:
    if now is None or before is None:
        return ""
    return f" ({fmt.format(now - before)} vs previous period)"


def figure_rows(current: PeriodFigures, previous: PeriodFigures) -> list[tuple[str, str]]:
    return [
        ("deployments", f"{current.deployments} (previous period {previous.deployments})"),
        *([("CodeDeploy rollback deployments (not releases)", str(current.rollback_deployments))]
          if current.rollback_deployments else []),
        ("succeeded / rolled back / failed / held / running",
         f"{current.succeeded} / {current.rolled_back} / {current.failed} / {current.held} / {current.running}"),
        ("success rate", _pct(current.success_rate) + _trend(current.success_rate, previous.success_rate)),
        ("change failure rate",
         _pct(current.change_failure_rate) + _trend(current.change_failure_rate, previous.change_failure_rate)),
        ("median duration", _minutes(current.median_duration_seconds)),
        ("median time to detect", _minutes(current.median_time_to_detect_seconds)),
        ("median time to roll back", _minutes(current.median_time_to_rollback_seconds)),
    ]  # fmt: skip


def _groups(title: str, groups: list[GroupCount]) -> list[str]:
    lines = [f"### By {title}", "", f"| {title} | deployments | succeeded | failed |", "|---|---|---|---|"]
    lines += [f"| {g.key} | {g.deployments} | {g.succeeded} | {g.failed} |" for g in groups] or ["| - | 0 | 0 | 0 |"]
    return [*lines, ""]


def render_summary_markdown(summary: Summary) -> str:
    cur = summary.current
    lines = [
        f"# DeployGuard {summary.period} summary",
        "",
        f"{cur.start:%Y-%m-%d %H:%M} to {cur.end:%Y-%m-%d %H:%M} UTC",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in figure_rows(cur, summary.previous)],
        "",
    ]
    lines += _groups("service", summary.by_service) + _groups("environment", summary.by_environment)
    lines += _groups("strategy", summary.by_strategy)
    inc = summary.incidents
    lines += [
        "### Incidents",
        "",
        f"{inc.incidents} incidents ({inc.open} open, {inc.acknowledged} acknowledged, {inc.resolved} resolved); "
        f"mean time to acknowledge {_minutes(inc.mean_time_to_acknowledge_seconds)}, "
        f"to resolve {_minutes(inc.mean_time_to_resolve_seconds)}",
        "",
        "### False-rollback candidates (rolled back, then redeployed unchanged and promoted)",
        "",
    ]
    lines += [f"- {c.service} {c.version} in {c.environment}: {c.rolled_back} rolled back, {c.redeployed} promoted"
              for c in summary.false_rollback_candidates] or ["- none"]  # fmt: skip
    lines += ["", "### Noisiest alert rules", ""]
    lines += [f"- {rule}: {count} alerts" for rule, count in summary.noisiest_rules] or ["- none"]
    lines += ["", "### Busiest notification channels", ""]
    lines += [f"- {channel}: {count} deliveries" for channel, count in summary.noisiest_channels] or ["- none"]
    return "\n".join(lines) + "\n"
