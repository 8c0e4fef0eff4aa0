"""The operations console's workflow: what the HTTP API and the web page show and do.

Reads go through the read models (:mod:`deployguard.readmodels`); canary verbs and emergency
rollback through :mod:`deployguard.workflows.control`; incidents through the incident service and the
escalator. Every write names the caller (``actor``), which the audit trail keeps.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from deployguard.aws.lambda_traffic import AliasState, LambdaTrafficShifter, aws_error_code
from deployguard.exceptions import ForbiddenError, NotAuthorizedError, TrafficShiftError
from deployguard.incidents.escalation import Page
from deployguard.incidents.models import Incident
from deployguard.models import Assessment, Deployment, DeploymentStatus, EcsTarget, LambdaTarget, Model, VerdictReason
from deployguard.readmodels import DeploymentHistory, DeploymentPage, DeploymentQuery, DeploymentReader
from deployguard.workflows.control import (
    CanaryControlService,
    ControlOutcome,
    ControlRequest,
    EmergencyRollbackOutcome,
    EmergencyRollbackRequest,
    Verb,
    routes_new,
)

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from deployguard.alerts.engine import AlertEngine


class CanaryCard(Model):
    """One deployment in flight as the console shows it: weight, the latest verdict and its reasons."""

    deployment: Deployment
    weight_percent: float
    verdict: str | None = Field(default=None, description="healthy, failing or inconclusive (latest assessment)")
    summary: str | None = None
    reasons: list[VerdictReason] = Field(default_factory=list)
    assessed_at: datetime | None = None
    open_incidents: int = 0


LiveSource = Literal["alias", "record", "unavailable"]


class ServiceCard(Model):
    """A service and environment with its latest deployment (emergency rollback starts here)."""

    service: str
    environment: str
    latest: Deployment | None = None
    live_version: str | None = Field(
        default=None,
        description="the version the service's traffic goes to now: a Lambda service's is read from its alias "
        "(GetAlias) as the request is served; null when it cannot be read (live_version_source unavailable) "
        "or there is no deployment",
    )
    live_version_source: LiveSource | None = Field(
        default=None,
        description="alias: read from the Lambda alias now; record: from the latest deployment's record (ECS, "
        "whose task sets the console does not read); unavailable: the alias could not be read, so no version "
        "is given as live (live_version_note says why)",
    )
    live_version_note: str | None = Field(
        default=None, description="why the live version is unknown, or that the alias splits its traffic"
    )
    left_on_new: bool = Field(
        default=False,
        description="the latest deployment ended unpromoted while its alias still routes its new version (its "
        "rollback failed): abort it to put the alias back (emergency rollback refuses a split alias)",
    )


class EscalationOutcome(Model):
    incident: Incident
    page: Page | None = Field(default=None, description="the page sent now (none when no step is left)")


class OperationsConsole:
    def __init__(self, reader: DeploymentReader, control: CanaryControlService, alerts: AlertEngine) -> None:
        self.reader = reader
        self.control = control
        self.alerts = alerts

    # ------------------------------------------------------------------ reads

    def active(self) -> list[CanaryCard]:
        open_by_deployment: dict[str, int] = {}
        for incident in self.alerts.incident_store.open_incidents():
            open_by_deployment[incident.deployment_id] = open_by_deployment.get(incident.deployment_id, 0) + 1
        cards = []
        for deployment in sorted(self.reader.active(), key=lambda d: d.started_at, reverse=True):
            latest = self.latest_assessment(deployment.deployment_id)
            cards.append(
                CanaryCard(
                    deployment=deployment,
                    weight_percent=round(deployment.canary_weight * 100, 2),
                    verdict=latest.verdict.decision.value if latest else None,
                    summary=latest.verdict.summary if latest else None,
                    reasons=latest.verdict.reasons if latest else [],
                    assessed_at=latest.at if latest else None,
                    open_incidents=open_by_deployment.get(deployment.deployment_id, 0),
                )
            )
        return cards

    def latest_assessment(self, deployment_id: str) -> Assessment | None:
        """The newest assessment only (one item read: the page polls this for every canary every few seconds)."""
        return self.reader.repository.latest_assessment(deployment_id)

    def deployments(self, query: DeploymentQuery) -> DeploymentPage:
        return self.reader.page(query)

    def history(self, deployment_id: str) -> DeploymentHistory:
        return self.reader.history(deployment_id)

    def services(self) -> list[ServiceCard]:
        """Every service with its latest deployment and the version live now: a Lambda service's read from
        its alias (once per alias in this request, and only here), never inferred from the records."""
        aliases: dict[tuple[str, str], AliasState | TrafficShiftError] = {}
        cards = []
        for service, environment in sorted(self.reader.repository.service_environments()):
            page = self.reader.page(DeploymentQuery(service=service, environment=environment, limit=1)).items
            latest = page[0] if page else None
            card = ServiceCard(service=service, environment=environment, latest=latest, **_live(latest, aliases))
            card.left_on_new = _left_on_new(latest, aliases)
            cards.append(card)
        return cards

    def incidents(self, *, include_resolved: bool = False, limit: int = 50) -> list[Incident]:
        if include_resolved:
            return self.alerts.incident_store.recent(limit)
        return sorted(self.alerts.incident_store.open_incidents(), key=lambda i: i.opened_at, reverse=True)[:limit]

    def incident(self, incident_id: str) -> Incident:
        return self.alerts.incident_store.get(incident_id)

    # ------------------------------------------------------------------ writes (actor = the caller)

    def control_canary(self, deployment_id: str, verb: Verb, actor: str, reason: str) -> ControlOutcome:
        # a write names its deployment exactly: never act on whatever a prefix happens to match
        return self.control.apply(deployment_id, ControlRequest(verb=verb, actor=actor, reason=reason))

    def emergency_rollback(self, request: EmergencyRollbackRequest) -> EmergencyRollbackOutcome:
        return self.control.emergency_rollback(request)

    # incident verbs go through the alert engine, as the CLI's do: issue trackers told, pages counted

    def acknowledge(self, incident_id: str, actor: str, notes: str) -> Incident:
        return self.alerts.acknowledge(incident_id, actor, notes)

    def resolve(self, incident_id: str, actor: str, notes: str) -> Incident:
        return self.alerts.resolve(incident_id, actor, notes)

    def escalate(self, incident_id: str, actor: str, notes: str) -> EscalationOutcome:
        """Page the incident's next escalation step now instead of when it is due."""
        incident, page = self.alerts.escalate(incident_id, actor, notes)
        return EscalationOutcome(incident=incident, page=page)


def _live(
    deployment: Deployment | None, aliases: dict[tuple[str, str], AliasState | TrafficShiftError]
) -> dict[str, Any]:
    """The live version fields of a service card. Lambda: GetAlias on the latest deployment's alias (``aliases``
    keeps this request's reads); a read that fails says so (``unavailable``) instead of a version from the
    records, which may be stale (someone moved the alias by hand, a rollback the record does not show)."""
    if deployment is None:
        return {}
    target = deployment.target
    if isinstance(target, EcsTarget):
        return _ecs_live(deployment, target)
    key = (target.function_name, target.alias)
    if key not in aliases:
        try:
            aliases[key] = LambdaTrafficShifter(target).current()
        except TrafficShiftError as exc:
            aliases[key] = exc
    alias = aliases[key]
    if isinstance(alias, TrafficShiftError):  # AWS's own text (role ARN, account id) only in the log
        logger.warning("cannot read alias", extra={"function": target.function_name, "error": str(alias)})
        note = f"cannot read alias {target.function_name}:{target.alias}: {aws_error_code(alias) or 'error'}"[:500]
        return {"live_version": None, "live_version_source": "unavailable", "live_version_note": note}
    split = ", ".join(f"{w:.0%} to version {v}" for v, w in sorted(alias.additional_weights.items()))
    return {"live_version": alias.function_version, "live_version_source": "alias",
            "live_version_note": f"the alias splits its traffic: {split}" if split else None}  # fmt: skip


def _ecs_live(deployment: Deployment, target: EcsTarget) -> dict[str, Any]:
    """An ECS service's live version, from its latest deployment's record: green's share of production as last
    recorded (``canary_weight``: CodeDeploy's, as the hook and the assessor read it) decides, whatever the
    status. All of it: the new version (AfterAllowTraffic, or a failure CodeDeploy did not roll back); none:
    blue's; a part: blue's, and the note says the split (as a Lambda alias's)."""
    status, weight = deployment.status, deployment.canary_weight
    new, stable = deployment.version, target.stable_task_definition or None
    note = "from the latest deployment's record"
    if status == DeploymentStatus.SUCCEEDED:
        return {"live_version": new, "live_version_source": "record", "live_version_note": note}
    if status == DeploymentStatus.ROLLED_BACK or weight <= 0.0:
        return {"live_version": stable, "live_version_source": "record", "live_version_note": note}
    if status.is_terminal:  # failed or stopped, and no rollback recorded: green keeps what it had
        note = (
            f"deployment {status.value} and no rollback is recorded: green ({new}) still serves {weight:.0%} of "
            "production traffic, as last recorded"
        )
    elif weight >= 1.0:
        note = f"green ({new}) serves all production traffic (the latest deployment's record)"
    if weight >= 1.0:
        return {"live_version": new, "live_version_source": "record", "live_version_note": note}
    split = f"the production listener splits its traffic: {weight:.0%} to green ({new}), as last recorded"
    return {"live_version": stable, "live_version_source": "record",
            "live_version_note": f"{note}; {split}" if status.is_terminal else split}  # fmt: skip


def _left_on_new(deployment: Deployment | None, aliases: dict[tuple[str, str], AliasState | TrafficShiftError]) -> bool:
    """The latest deployment ended unpromoted and its alias (as :func:`_live` read it) still routes its new
    version: its rollback failed (``CanaryControlService._left_on_new``), abort finishes it."""
    if deployment is None or not deployment.status.is_terminal or deployment.decision == "promoted":
        return False
    target = deployment.target
    alias = aliases.get((target.function_name, target.alias)) if isinstance(target, LambdaTarget) else None
    return isinstance(target, LambdaTarget) and isinstance(alias, AliasState) and routes_new(target, alias)


# --------------------------------------------------------------------------- who is calling


class Caller(Model):
    """The identity API Gateway's authoriser vouched for (IAM SigV4, or JWT claims)."""

    identity: str = Field(
        min_length=1,
        description="IAM user/role ARN; JWT: the issuer and subject (iss#sub), what the token vouches for, with the "
        "username or email beside it in brackets, a display name only (another issuer's user may claim any)",
    )
    name: str | None = Field(default=None, description="JWT: the username or email claim (display only)")
    kind: Literal["iam", "jwt"]
    can_write: bool | None = Field(
        description="JWT: whether the token carries the write scope. IAM: null (unknown): API Gateway decides each "
        "write route by the caller's policies (the console write policy allows them), which the console cannot see"
    )


def caller_of(authorizer: Mapping[str, Any] | None, write_scope: str) -> Caller:
    """The caller of an HTTP API request from its ``requestContext.authorizer``.

    IAM: API Gateway checks ``execute-api:Invoke`` on each route (the read policy allows GET
    routes, the write policy POST ones), so a caller that reached a write route may write; whether
    a caller reading ``/api/whoami`` could also write is its policies' business: ``can_write`` is
    None (unknown) rather than a promise. JWT: writing needs ``write_scope`` among the token's
    scopes (``scope`` or ``scp`` claim).
    """
    authorizer = authorizer or {}
    iam = authorizer.get("iam") or {}
    if iam:
        identity = iam.get("userArn") or iam.get("callerId") or iam.get("accessKey") or ""
        if identity:
            return Caller(identity=str(identity), kind="iam", can_write=None)
    claims = (authorizer.get("jwt") or {}).get("claims") or {}
    subject = str(claims.get("sub") or "")
    if not subject:
        raise NotAuthorizedError("no authorised identity came with the request (IAM SigV4 or a bearer token)")
    name = next((str(claims[k]) for k in ("username", "cognito:username", "email") if claims.get(k)), None)
    raw = claims.get("scope") or claims.get("scp") or ""
    scopes = raw.split() if isinstance(raw, str) else [str(s) for s in raw]
    identity = jwt_identity(str(claims.get("iss") or ""), subject, name)
    return Caller(identity=identity, name=name, kind="jwt", can_write=write_scope in scopes)


MAX_IDENTITY = 200  # an actor in the audit trail (EmergencyRollbackRequest.actor, ControlRequest.actor)


def jwt_identity(issuer: str, subject: str, name: str | None) -> str:
    """``iss#sub`` (the subject alone when the token names no issuer, as the local server's), the only claims an
    issuer vouches for; the username or email beside it in brackets, for people to read. Within
    :data:`MAX_IDENTITY`: the name is shortened first; an issuer and subject longer than that are digested."""
    vouched = f"{issuer}#{subject}" if issuer else subject
    if len(vouched) > MAX_IDENTITY - 40:
        vouched = "jwt:" + hashlib.sha256(vouched.encode()).hexdigest()[:32] + f"#{subject[:60]}"
    if not name or name == subject:
        return vouched
    room = MAX_IDENTITY - len(vouched) - 3
    shown = name if len(name) <= room else name[: max(room - 1, 0)] + "…"
    return f"{vouched} ({shown})" if room > 4 else vouched


def writer(caller: Caller) -> str:
    """The caller's identity for the audit trail, if it may write (an IAM caller at a write route: the
    gateway let it through, by its policies)."""
    if caller.can_write is False or (caller.can_write is None and caller.kind != "iam"):
        raise ForbiddenError(f"{caller.identity} may read but not write (no write permission)")
    return caller.identity
