"""Read models: what DeployGuard decided, read back for people, reports, CI and the console.

A workflow-floor package (it composes :mod:`deployguard.storage`, the incidents repository
and the ground models; it writes nothing):

- :class:`DeploymentReader` (``deployments.py``): lists with filters (service, environment,
  statuses, since), newest first, paged through the indexes; one deployment by id (the CLI: or prefix);
  :meth:`DeploymentReader.history` (everything recorded); :meth:`DeploymentReader.wait` (the CI gate).
- :class:`DeploymentHistory` (``history.py``): the JSON export, schema ``deployguard-history/1``
  (:func:`history_json_schema`); :func:`timeline` merges it into one list in time order;
  :class:`GateOutcome` maps a deployment to the gate's exit code.
- :class:`DetailReader` (``detail.py``): what the console shows of one deployment, bounded whatever its age:
  :class:`DeploymentDetail` (the record, the latest verdicts, the newest assessments and events) and pages
  further back (``before``; :class:`TimelinePage`), each one reverse Query of the page's size.
- :class:`SummaryBuilder` (``summary.py``): figures of a period against the previous one.
- ``wording.py``: how a deployment's end is said to people, in the report, the console and the CLI alike: the
  verdict once, the remediation's cause once (read from its stored parts, ``EndCause``; records written before
  them from their reason, which repeats the verdict), periods on the clock.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deployguard.exceptions import QueryError
    from deployguard.readmodels.deployments import DeploymentPage, DeploymentQuery, DeploymentReader, parse_since
    from deployguard.readmodels.detail import DeploymentDetail, DetailReader, TimelinePage
    from deployguard.readmodels.history import (
        HISTORY_SCHEMA,
        CheckResult,
        DeploymentHistory,
        GateOutcome,
        RemediationStep,
        TimelineItem,
        TrafficStep,
        business_impact,
        history_json_schema,
        timeline,
        verdict_why,
    )
    from deployguard.readmodels.summary import SUMMARY_SCHEMA, Summary, SummaryBuilder

# each name is imported from its module on first use: the console reads deployments and histories and
# never imports the summary (statistics, its models) that only the report writer and the CLI use
_MODULE_OF = {
    **dict.fromkeys(("DeploymentPage", "DeploymentQuery", "DeploymentReader", "QueryError", "parse_since"),
                    "deployments"),
    **dict.fromkeys(("HISTORY_SCHEMA", "CheckResult", "DeploymentHistory", "GateOutcome", "RemediationStep",
                     "TimelineItem", "TrafficStep", "business_impact", "history_json_schema", "timeline",
                     "verdict_why"), "history"),
    **dict.fromkeys(("DeploymentDetail", "DetailReader", "TimelinePage"), "detail"),
    **dict.fromkeys(("SUMMARY_SCHEMA", "Summary", "SummaryBuilder"), "summary"),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "HISTORY_SCHEMA",
    "SUMMARY_SCHEMA",
    "CheckResult",
    "DeploymentDetail",
    "DeploymentHistory",
    "DeploymentPage",
    "DeploymentQuery",
    "DeploymentReader",
    "DetailReader",
    "GateOutcome",
    "QueryError",
    "RemediationStep",
    "Summary",
    "SummaryBuilder",
    "TimelineItem",
    "TimelinePage",
    "TrafficStep",
    "business_impact",
    "history_json_schema",
    "parse_since",
    "timeline",
    "verdict_why",
]
