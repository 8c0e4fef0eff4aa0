"""How a deployment's end is said to people: once each, in the report, the console and the CLI alike.

A remediation's end is stored in its parts (:class:`~deployguard.models.EndCause`: the incident and its rules, the
canary's failing verdict behind it, CodeDeploy's end after it) beside the audit sentence composed from them once
(``decision_reason``: "remediation rollback for incident inc-1 (canary-issue): <title>; canary verdict:
<verdict>"). What people read is put together from the parts, never taken apart from the sentence:

- :func:`why_ended`: why it ended, the remediation's cause without the verdict again ("rolled back by
  remediation for incident inc-1 (canary-issue) on the canary's failing verdict"); the verdict itself is shown
  once, as the canary's last verdict;
- :func:`reason_once`: the record's reason with the verdict said once (the CI gate's message, ``deployguard
  status``);
- :func:`outcome_note`: what the gate's outcome says beyond that reason ("" when that is all it says);
- :func:`period_clock` and :func:`on_clock`: a reason's "since period 5" as "since 12:14 (period 5)" where the
  assessments tell the periods' times.

Records written before the parts were stored have the sentence alone, and one rolled back by remediation on its
failing verdict says the verdict twice in it, ``<verdict> (remediation rollback for incident inc-1
(canary-issue): <title>; canary verdict: <verdict>)``, as do the events' messages of its time: those alone are
read by their text (:func:`said_once`, ``_legacy_remediation``), and said once all the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from deployguard.models import Assessment, Deployment, EndCause

_VERB = {"promoted": "promoted", "rolled_back": "rolled back", "failed": "failed", "held": "held"}
_SINCE = re.compile(r"since period (\d+)")
# the sentence of records written before EndCause: read by its text, for them alone
_REMEDIATION = re.compile(r"remediation (?P<action>\S+) for incident (?P<incident>\S+) \((?P<rules>[^()]*)\): ")
_VERDICT = "; canary verdict: "
_CODEDEPLOY = re.compile(r"; (CodeDeploy [A-Z_]+(?::.*)?)$")


def why_ended(deployment: Deployment, state: str, last_verdict: Assessment | None) -> str | None:
    """Why the deployment ended, without the canary's verdict said again: ``state`` is the gate's outcome
    (:class:`~deployguard.readmodels.history.GateOutcome`), ``last_verdict`` the canary's last verdict (shown
    on its own). None while it runs; the reason as recorded when it is of no known shape."""
    if state == "running":
        return None
    verb = _VERB.get(state, "ended")
    summary = last_verdict.verdict.summary if last_verdict is not None else None
    if deployment.end_cause is not None:
        return _remediation(deployment.end_cause, verb, summary)
    reason = deployment.decision_reason
    if not reason:
        return reason
    found = _REMEDIATION.search(reason)
    if found is not None:  # a record written before EndCause
        return _legacy_remediation(reason, found, verb, summary)
    if summary and reason.startswith(summary):  # the canary's verdict ended it: its row says the verdict
        decision = last_verdict.verdict.decision.value if last_verdict is not None else "last"
        return f"{verb} on the canary's {decision} verdict{reason[len(summary) :]}"
    return reason


def _remediation(cause: EndCause, verb: str, summary: str | None) -> str:
    """A remediation's end from its parts: the verdict is named, not said, when it is the canary's last one
    (said there); one of its time that is not (or with no last verdict shown) is said here."""
    action = "" if cause.remediation == "rollback" else f" {cause.remediation}"
    text = f"{verb} by remediation{action} for incident {cause.incident_id} ({', '.join(cause.rules)})"
    if cause.verdict is not None:
        said = cause.verdict == summary
        text += " on the canary's failing verdict" if said else f"; the canary's verdict then: {cause.verdict}"
    return f"{text}; {cause.codedeploy}" if cause.codedeploy else text


def _legacy_remediation(reason: str, found: re.Match[str], verb: str, summary: str | None) -> str:
    """:func:`_remediation` of a record written before EndCause, from its sentence."""
    head, tail = reason[: found.start()], reason[found.end() :]
    if head and not head.endswith(" ("):
        return reason  # some other text that names a remediation: said as recorded
    outer = head[:-2]  # the canary's verdict the workflow put first: "<verdict> (remediation ...)"
    if outer and tail.endswith(")"):
        tail = tail[:-1]
    title, said, verdict = tail.partition(_VERDICT)
    rest = verdict if said else title
    known = outer or summary
    if said and known and verdict.startswith(known):
        suffix = verdict[len(known) :].removeprefix("; ")
    else:
        suffix = m.group(1) if (m := _CODEDEPLOY.search(rest)) else ""
    action = found["action"]
    text = (
        f"{verb} by remediation{'' if action == 'rollback' else f' {action}'} for incident {found['incident']}"
        f" ({found['rules']})"
    )
    if said:
        text += " on the canary's failing verdict"
    elif outer and outer != summary:  # a verdict of its time that is not the canary's last one: said here
        text += f"; the canary's verdict then: {outer}"
    return f"{text}; {suffix}" if suffix else text


def reason_once(deployment: Deployment) -> str | None:
    """The record's reason with the canary's verdict said once: as stored when it was composed from its parts
    (or by no remediation); a record written before EndCause that said it twice, with it said once
    (:func:`said_once`)."""
    reason = deployment.decision_reason
    if not reason or deployment.end_cause is not None:
        return reason
    return said_once(reason)


def said_once(text: str) -> str:
    """A text recorded before EndCause that says the canary's verdict twice, ``[...] <verdict> (remediation ...:
    <title>; canary verdict: <verdict>)[...]`` (an event's message, a reason), with the verdict said once: ``[...]
    <verdict> (remediation ...: <title>)[...]``. Any other text (every newer one) as it is."""
    start = text.find(" (remediation ")
    said = text.find(_VERDICT, start) if start > 0 else -1
    if said < 0:
        return text
    after = text[said + len(_VERDICT) :]
    ends = [j for j, c in enumerate(after) if c == ")"]
    for j in reversed(ends):  # the longest verdict said before the remediation too
        if text[:start].endswith(after[:j]) and j > 0:
            return text[:said] + after[j:]
    return text


def outcome_note(message: str, deployment: Deployment) -> str:
    """The gate's outcome ``message`` without the reason :func:`why_ended` says: "" when it is only that
    reason; "rollback deployment of X succeeded: version 1 is back" of a rollback deployment's."""
    why = reason_once(deployment) or deployment.decision or deployment.status.value
    if message == why:
        return ""
    for tail in (f" ({why})", f": {why}"):
        if message.endswith(tail):
            return message[: -len(tail)]
    return message


def period_clock(assessments: Iterable[Assessment]) -> tuple[datetime, float] | None:
    """When the canary's period 0 began and how long a period is, as its canary assessments (not the
    post-deployment looks) tell it: each judged ``details.periods`` periods up to its time, so consecutive
    ones give the seconds per period and each gives the start. None unless they all agree (within half a
    period): a clock time is given only where the record tells it."""
    looks = [
        (a.at, int(a.details["periods"]))
        for a in assessments
        if a.details.get("kind") != "post_deployment"
        and isinstance(a.details.get("periods"), int)
        and a.details["periods"] > 0
    ]
    looks.sort(key=lambda look: look[0])
    steps = [(b_at - a_at).total_seconds() / (b_n - a_n) for (a_at, a_n), (b_at, b_n) in pairwise(looks) if b_n > a_n]
    if not steps or max(steps) - min(steps) > 1.0:
        return None
    period = round(sum(steps) / len(steps))
    if period <= 0:
        return None
    starts = [at - timedelta(seconds=n * period) for at, n in looks]
    if (max(starts) - min(starts)).total_seconds() > period / 2:
        return None
    return min(starts), float(period)


def on_clock(clock: tuple[datetime, float] | None, text: str) -> str:
    """``text`` with each "since period N" as "since HH:MM (period N)" on ``clock`` (:func:`period_clock`)."""
    if clock is None:
        return text
    start, period = clock
    return _SINCE.sub(
        lambda m: f"since {start + timedelta(seconds=int(m.group(1)) * period):%H:%M} (period {m.group(1)})", text
    )


# --------------------------------------------------------------------------- people's answers and the promotion hold

PROMOTION_HOLD_ACTIONS = ("promotion_held", "promotion_hold_ended", "promotion_refused")


def remediation_said(action: str, actor: str, reason: str, details: dict[str, Any]) -> tuple[str, str, str] | None:
    """A remediation request, people's answer and the canary's promotion hold as the timeline says them: (title,
    detail, severity); None for another audit action (said as recorded: "<action> by <actor>")."""
    what = str(details.get("remediation_action") or "remediation")
    request = f" (request {details['approval_id']})" if details.get("approval_id") else ""
    incident = f" for incident {details['incident_id']}" if details.get("incident_id") else ""
    if action == "remediation_pending_approval":
        return f"{what} asked of people{incident}: waiting for an answer{request}", reason, "warning"
    if action == "remediation_approved":
        return f"{what} approved by {actor}{request}", f"notes: {reason}" if reason else "", "warning"
    if action == "remediation_rejected":
        return f"{what} rejected by {actor}{request}", f"notes: {reason}" if reason else "", "info"
    if action == "remediation_approval_expired":
        return f"{what} request expired unanswered{request}", reason, "warning"
    if action == "promotion_held":
        weight = details.get("weight")
        at = f" at {float(weight):g}%" if isinstance(weight, int | float) else ""
        return f"promotion held{at}: waiting for people's answer on a rollback", reason, "warning"
    if action == "promotion_hold_ended":
        outcome = str(details.get("outcome") or "").replace("_", " ")
        return f"promotion hold ended{f': {outcome}' if outcome else ''}", reason, "info"
    if action == "promotion_refused":
        return "promotion refused: people were asked to roll it back", reason, "warning"
    return None


__all__ = [
    "on_clock",
    "outcome_note",
    "period_clock",
    "reason_once",
    "remediation_said",
    "said_once",
    "why_ended",
]
