"""Issue trackers: every incident opens one issue (GitHub REST API or Jira Cloud REST API v3),
acknowledgements and escalation pages are commented on it, and resolving the incident closes it.

One issue per incident, whatever is retried: the issue carries a marker label
(``deployguard-<incident id>``), the tracker is searched for it before anything is created,
and the issue's key is kept on the incident (``Incident.issues``); each comment is sent once
(a once-only marker per incident, tracker and news, released when the call fails so a retry
may send it). The API token comes from Secrets Manager (``token_secret``); a literal token is
accepted only in local mode. Every URL passes the outbound guard of the notifications
(https, an allowed host, no private, loopback or link-local address, resolved once and
connected to that address; redirects not followed).

A tracker that fails never stops the alert engine: the failure is audited on the deployment
(``issue_tracker_failed``) and the news is kept as a pending sync (a marker of kind
``ISSUE-SYNC``, in the pending index until done) that the minute tick retries
(:meth:`IssueTrackerSync.retry_pending`) until it goes through, for at most :data:`SYNC_RETRY`:
a resolved incident gets no more news, yet its issue is closed once the tracker is back. A
close is a comment then the state change, each sent once, so a retry does not comment twice.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from deployguard import clock
from deployguard.exceptions import NotFoundError, TrackerError
from deployguard.notification.secrets import SecretResolver
from deployguard.notification.settings import SecretSource
from deployguard.notification.urlsafety import check_outbound, redact
from deployguard.storage.leases import DONE, Leases

if TYPE_CHECKING:
    from pydantic import SecretStr

    from deployguard.alerts.settings import AlertingSettings, IssueTrackerSettings
    from deployguard.incidents.models import Incident
    from deployguard.incidents.repository import IncidentRepository

ACTOR = "deployguard:issue-trackers"
COMMENTED = "ISSUE-COMMENT"
SYNC_KIND = "ISSUE-SYNC"  # news a tracker failed, retried by the minute tick
SYNC_RETRY = timedelta(days=3)  # a pending sync still failing after this is given up (audited)
SYNC_TTL = SYNC_RETRY + timedelta(days=1)  # the marker outlives its retries: the give-up is audited
USER_AGENT = "DeployGuard-IssueTracker/1"
logger = logging.getLogger(__name__)

News = Literal["opened", "acknowledged", "paged", "resolved"]


@dataclass(frozen=True)
class IssueRef:
    key: str  # GitHub: the issue number; Jira: the issue key (OPS-12)
    url: str


def marker_label(incident: Incident) -> str:
    return f"deployguard-{incident.incident_id}"


class Tracker(Protocol):
    name: str

    def find(self, incident: Incident) -> IssueRef | None: ...
    def create(self, incident: Incident, body: str) -> IssueRef: ...
    def comment(self, ref: IssueRef, text: str) -> None: ...
    def close(self, ref: IssueRef) -> None: ...


class _Http:
    """JSON calls to one tracker's API: each URL checked and its host resolved once, the connection made to
    that checked address (no DNS rebinding), no redirects, no proxy; errors name the tracker."""

    def __init__(self, name: str, settings: IssueTrackerSettings, headers: dict[str, str], local_mode: bool) -> None:
        self.name = name
        self.settings = settings
        self.local_mode = local_mode
        self.headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json", **headers}

    def call(self, method: str, path: str, payload: Any = None, params: dict[str, str] | None = None) -> Any:
        url = self.settings.url + path
        import requests  # at the first call to a tracker, not with the module (cold start)

        from deployguard.notification.pinned_http import pinned_session

        target = check_outbound(url, self.settings.hosts, self.local_mode, field=f"alerting.issue_trackers.{self.name}")
        try:
            with pinned_session(target) as session:
                response = session.request(
                    method, url, json=payload, params=params, headers=self.headers,
                    timeout=self.settings.timeout_seconds, allow_redirects=False,
                )  # fmt: skip
        except requests.RequestException as exc:
            what = f"issue tracker {self.name}: {method} {redact(url)} failed ({type(exc).__name__})"
            raise TrackerError(what) from None
        with response:
            if not 200 <= response.status_code < 300:
                code = response.status_code
                raise TrackerError(f"issue tracker {self.name}: {method} {path} -> HTTP {code}")
            return response.json() if response.content else None


def _issue_text(incident: Incident) -> str:
    return (
        f"DeployGuard incident {incident.incident_id} ({incident.severity.value}) on {incident.service} "
        f"{incident.version} in {incident.environment}.\n\nRules: {', '.join(incident.rules)}\n"
        f"Deployment: {incident.deployment_id}\nOpened: {incident.opened_at.isoformat()}\n\n"
        f"Acknowledge: deployguard incidents ack {incident.incident_id} --by NAME"
    )


class GitHubTracker:
    """GitHub issues: POST /repos/{repo}/issues, /issues/{n}/comments, PATCH /issues/{n} to close."""

    def __init__(self, name: str, settings: IssueTrackerSettings, token: SecretStr, local_mode: bool) -> None:
        self.name = name
        self.settings = settings
        self.http = _Http(
            name,
            settings,
            {
                "Authorization": f"Bearer {token.get_secret_value()}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
            local_mode,
        )
        self.base = f"/repos/{settings.repository}/issues"

    def _ref(self, issue: dict[str, Any]) -> IssueRef:
        return IssueRef(key=str(issue["number"]), url=str(issue.get("html_url", "")))

    def find(self, incident: Incident) -> IssueRef | None:
        found = self.http.call("GET", self.base, params={"labels": marker_label(incident), "state": "all"})
        issues = [i for i in found or [] if "pull_request" not in i]
        return self._ref(issues[0]) if issues else None

    def create(self, incident: Incident, body: str) -> IssueRef:
        payload = {
            "title": f"[{incident.severity.value}] {incident.title}"[:250],
            "body": body,
            "labels": [*self.settings.labels, marker_label(incident)],
        }
        return self._ref(self.http.call("POST", self.base, payload))

    def comment(self, ref: IssueRef, text: str) -> None:
        self.http.call("POST", f"{self.base}/{ref.key}/comments", {"body": text})

    def close(self, ref: IssueRef) -> None:
        self.http.call("PATCH", f"{self.base}/{ref.key}", {"state": "closed", "state_reason": "completed"})


def _adf(text: str) -> dict[str, Any]:
    """Atlassian Document Format: one paragraph per line (Jira v3 takes no plain-text bodies)."""
    paragraphs = [
        {"type": "paragraph", "content": [{"type": "text", "text": line}]} for line in text.splitlines() if line.strip()
    ]
    return {"type": "doc", "version": 1, "content": paragraphs}


class JiraTracker:
    """Jira Cloud REST API v3: POST /rest/api/3/issue, /issue/{key}/comment, /issue/{key}/transitions."""

    def __init__(self, name: str, settings: IssueTrackerSettings, token: SecretStr, local_mode: bool) -> None:
        self.name = name
        self.settings = settings
        basic = base64.b64encode(f"{settings.email}:{token.get_secret_value()}".encode()).decode()
        self.http = _Http(name, settings, {"Authorization": f"Basic {basic}", "Accept": "application/json"}, local_mode)

    def _ref(self, key: str) -> IssueRef:
        return IssueRef(key=key, url=f"{self.settings.url}/browse/{key}")

    def find(self, incident: Incident) -> IssueRef | None:
        jql = f'project = "{self.settings.project_key}" AND labels = "{marker_label(incident)}"'
        found = self.http.call("POST", "/rest/api/3/search/jql", {"jql": jql, "fields": ["status"], "maxResults": 1})
        issues = (found or {}).get("issues", [])
        return self._ref(str(issues[0]["key"])) if issues else None

    def create(self, incident: Incident, body: str) -> IssueRef:
        fields = {
            "project": {"key": self.settings.project_key},
            "issuetype": {"name": self.settings.issue_type},
            "summary": f"[{incident.severity.value}] {incident.title}"[:250],
            "description": _adf(body),
            "labels": [*self.settings.labels, marker_label(incident)],
        }
        created = self.http.call("POST", "/rest/api/3/issue", {"fields": fields})
        return self._ref(str(created["key"]))

    def comment(self, ref: IssueRef, text: str) -> None:
        self.http.call("POST", f"/rest/api/3/issue/{ref.key}/comment", {"body": _adf(text)})

    def close(self, ref: IssueRef) -> None:
        transitions = self.http.call("GET", f"/rest/api/3/issue/{ref.key}/transitions").get("transitions", [])
        wanted = self.settings.done_transition

        def closes(transition: dict[str, Any]) -> bool:
            if wanted:
                return transition.get("name") == wanted
            return ((transition.get("to") or {}).get("statusCategory") or {}).get("key") == "done"

        chosen = next((t for t in transitions if closes(t)), None)
        if chosen is None:
            names = ", ".join(str(t.get("name")) for t in transitions) or "none"
            raise TrackerError(f"issue tracker {self.name}: no transition closes {ref.key} (available: {names})")
        self.http.call("POST", f"/rest/api/3/issue/{ref.key}/transitions", {"transition": {"id": str(chosen["id"])}})


class IssueTrackerSync:
    """Keeps each configured tracker's issue in step with an incident (called by the alert engine)."""

    def __init__(
        self,
        settings: AlertingSettings,
        incidents: IncidentRepository,
        *,
        local_mode: bool = False,
        secrets: SecretResolver | None = None,
    ) -> None:
        self.settings = settings
        self.incidents = incidents
        self.local_mode = local_mode
        self.secrets = secrets or SecretResolver(local_mode=local_mode)
        self._trackers: dict[str, Tracker] = {}
        self.pending = Leases(lambda: incidents.deployments.table, SYNC_KIND, SYNC_TTL, pending_index=True)

    @property
    def enabled(self) -> bool:
        return bool(self.settings.issue_trackers)

    def tracker(self, name: str) -> Tracker:
        if name not in self._trackers:
            config = self.settings.issue_trackers[name]
            where = f"alerting.issue_trackers.{name}"
            source = SecretSource(field="token", value=config.token, secret=config.token_secret)
            token = self.secrets.resolve(source, where)
            kind = GitHubTracker if config.type == "github" else JiraTracker
            self._trackers[name] = kind(name, config, token, self.local_mode)
        return self._trackers[name]

    def open_missing(self, incident: Incident) -> None:
        """Open the incident's issue in every tracker that has none yet and no pending sync of the opening
        (a failed one: the minute tick sends it); idempotent (the tracker is searched before anything is
        created). Driven by the incident's state, not by who opened it: a retry of an alert whose first
        attempt opened the incident and failed before its issue opens it. Never raises."""
        missing = []
        for name, config in self.settings.issue_trackers.items():
            if incident.severity.rank < config.min_severity.rank or name in incident.issues:
                continue
            try:
                if self.pending.get(self._sync_key(name, incident, "opened", "")) is not None:
                    continue  # kept for the tick (or done by it; then the incident has its issue)
            except Exception:
                logger.warning(
                    "cannot read the pending issue-tracker syncs", extra={"incident_id": incident.incident_id}
                )
                continue
            missing.append(name)
        if missing:
            self.on_news(incident, "opened", only=missing)

    def on_news(self, incident: Incident, news: News, text: str = "", *, only: list[str] | None = None) -> None:
        """Open, comment on or close the incident's issue in every tracker (or those named ``only``); never raises."""
        for name, config in self.settings.issue_trackers.items():
            if incident.severity.rank < config.min_severity.rank or (only is not None and name not in only):
                continue
            try:
                self._sync(name, incident, news, text)
            except Exception as exc:  # a tracker's outage must not stop alerting: audited, kept for the tick
                logger.warning("issue tracker failed", extra={"tracker": name, "incident_id": incident.incident_id})
                kept = self._keep(name, incident, news, text)
                self.incidents.deployments.audit(
                    incident.current_deployment_id, "issue_tracker_failed", ACTOR,
                    f"{name}: {news}: {exc}" + ("; retried by the minute tick" if kept else ""),
                    incident_id=incident.incident_id, tracker=name, retried=kept,
                )  # fmt: skip

    def retry_pending(
        self, now: datetime | None = None, max_items: int = 20, budget_seconds: float = 20.0
    ) -> list[dict[str, Any]]:
        """Send again the news a tracker failed (the minute tick calls this); each goes through once.
        A sync still failing after :data:`SYNC_RETRY` is given up (audited). A tracker that fails again
        is left for the next tick after its first failure, and no sync starts after ``budget_seconds``:
        a tracker that is down costs the tick one request's timeout, not one per sync. Never raises;
        nothing is read when no tracker is configured."""
        done: list[dict[str, Any]] = []
        started, down = time.monotonic(), set()
        if not self.enabled:
            return done
        at = now or clock.now()
        try:
            waiting = list(self.pending.pending(max_items))
        except Exception:
            logger.exception("cannot list the pending issue-tracker syncs")
            return done
        for marker in waiting:
            attrs = marker.attributes
            name, news, text = str(attrs.get("tracker")), str(attrs.get("news")), str(attrs.get("text", ""))
            summary: dict[str, Any] = {"tracker": name, "incident_id": attrs.get("incident_id"), "news": news}
            if name in down or time.monotonic() - started > budget_seconds:
                continue  # the next tick
            try:
                fresh = self.pending.get(marker.key)  # the index lags: read the marker itself
                if fresh is None or fresh.state == DONE:
                    continue
                if name not in self.settings.issue_trackers:  # the tracker was removed from the configuration
                    self.pending.done(marker.key, dropped=True)
                    continue
                incident = self.incidents.get(str(attrs.get("incident_id")))
                if at - datetime.fromisoformat(str(attrs.get("failed_at"))) > SYNC_RETRY:
                    self.pending.done(marker.key, gave_up=True)
                    self.incidents.deployments.audit(
                        incident.current_deployment_id, "issue_tracker_gave_up", ACTOR,
                        f"{name}: {news}: still failing after {SYNC_RETRY}", incident_id=incident.incident_id,
                        tracker=name,
                    )  # fmt: skip
                    done.append({**summary, "synced": False, "gave_up": True})
                    continue
                self._sync(name, incident, news, text)  # type: ignore[arg-type]
                self.pending.done(marker.key)
            except NotFoundError:  # the incident is gone (TTL): nothing to say any more
                self.pending.done(marker.key, dropped=True)
                continue
            except Exception as exc:  # still failing: the next tick tries again
                down.add(name)
                logger.warning("issue tracker still failing", extra={**summary, "reason": str(exc)})
                done.append({**summary, "synced": False, "error": f"{type(exc).__name__}: {exc}"})
                continue
            done.append({**summary, "synced": True})
        return done

    def _keep(self, name: str, incident: Incident, news: News, text: str) -> bool:
        """The failed news, kept for :meth:`retry_pending`; False if even that cannot be written."""
        try:
            self.pending.claim(self._sync_key(name, incident, news, text), clock.now().timestamp(),
                               tracker=name, incident_id=incident.incident_id, deployment_id=incident.deployment_id,
                               news=news, text=text, failed_at=clock.now().isoformat())  # fmt: skip
        except Exception:
            logger.exception("cannot keep the issue-tracker sync", extra={"incident_id": incident.incident_id})
            return False
        return True

    @staticmethod
    def _sync_key(name: str, incident: Incident, news: str, text: str) -> str:
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return f"{name}#{incident.incident_id}#{news}#{digest}"

    def _sync(self, name: str, incident: Incident, news: News, text: str) -> None:
        ref = self._issue(name, incident)
        if news == "opened":
            return
        key = f"{name}#{incident.incident_id}#{news}#{text[:60]}"
        said = self._once(key, lambda: self.tracker(name).comment(ref, text))
        closed = news == "resolved" and self._once(f"{key}#close", lambda: self.tracker(name).close(ref))
        if closed or (said and news != "resolved"):
            self.incidents.deployments.audit(
                incident.current_deployment_id, f"issue_{'closed' if news == 'resolved' else 'commented'}", ACTOR,
                f"{name} issue {ref.key}: {news}", incident_id=incident.incident_id, tracker=name, issue=ref.key,
            )  # fmt: skip

    def _once(self, key: str, call: Callable[[], None]) -> bool:
        """``call`` unless it went through already (a retried delivery); True if this call made it."""
        if not self.incidents.deployments.claim_once(COMMENTED, key, timedelta(days=30)):
            return False
        try:
            call()
        except Exception:
            self.incidents.deployments.release(COMMENTED, key)  # free for the retry
            raise
        return True

    def _issue(self, name: str, incident: Incident) -> IssueRef:
        """The incident's issue in this tracker: kept on the incident, else found by its marker, else created."""
        current = self.incidents.get(incident.incident_id)
        known = current.issues.get(name)
        if known:
            return IssueRef(key=known["key"], url=known.get("url", ""))
        tracker = self.tracker(name)
        ref = tracker.find(current)
        created = ref is None
        if ref is None:
            ref = tracker.create(current, _issue_text(current))
        found = ref

        def keep(i: Incident) -> bool:
            if name in i.issues:
                return False
            i.issues[name] = {"key": found.key, "url": found.url}
            return True

        self.incidents.update(incident.incident_id, keep)
        self.incidents.deployments.audit(
            incident.current_deployment_id, "issue_opened" if created else "issue_found", ACTOR,
            f"{name} issue {ref.key} for incident {incident.incident_id}", incident_id=incident.incident_id,
            tracker=name, issue=ref.key, url=ref.url,
        )  # fmt: skip
        return ref
