"""A canary holding its promotion while people are asked whether to roll it back is answered from the console's HTTP
API: the local server on 127.0.0.1 in front of the real ConsoleReadFunction / ConsoleWriteFunction, over the same
embedded AWS the canary runs in (promotion_hold_support.py: the Shop metrics, the canary state machine, the alert
engine asking for a rollback in approval mode). Two minutes into the hold a person reads the pending request (its
hold shown: the weight and since when) and answers it: approved, the canary rolls back; rejected, it promotes. The
answer is recorded with the caller's identity and said in the deployment's timeline."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from alert_rules_support import run_canary, shop_stack
from promotion_hold_support import DEP, REVENUE_DOWN, tolerant, trail

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.storage.repository import DeploymentRepository
from deployguard_local.console_server import ConsoleServer, LocalCredentials
from deployguard_local.traffic import VersionBehaviour


class ConsolePerson:
    """Two minutes after the hold began, reads the pending request over HTTP and answers it (once)."""

    def __init__(self, url: str, credentials: LocalCredentials, verb: str) -> None:
        self.url, self.credentials, self.verb = url, credentials, verb
        self.hold_began: datetime | None = None
        self.seen: dict[str, Any] | None = None
        self.answer: requests.Response | None = None

    def _get(self, path: str) -> Any:
        response = requests.get(f"{self.url}{path}", timeout=30,
                                headers={"Authorization": f"Bearer {self.credentials.read_token}"})  # fmt: skip
        assert response.status_code == 200, response.text
        return response.json()

    def on_clock(self, before: datetime, after: datetime) -> None:
        if self.answer is not None:
            return
        if self.hold_began is None:
            began = trail(DEP, "promotion_held")
            self.hold_began = began[0].at if began else None
            return
        if after - self.hold_began < timedelta(minutes=2):
            return
        waiting = [r for r in self._get("/api/remediation-requests") if r["deployment_id"] == DEP]
        assert len(waiting) == 1, waiting
        self.seen = waiting[0]
        self.answer = requests.post(
            f"{self.url}/api/remediation-requests/{self.seen['approval_id']}/{self.verb}",
            json={"notes": f"{self.verb}: looked at revenue"}, timeout=30,
            headers={"Authorization": f"Bearer {self.credentials.write_token}"},
        )  # fmt: skip


@pytest.mark.parametrize(("verb", "decision"), [("approve", "rolled_back"), ("reject", "promoted")])
def test_a_held_canary_answered_from_the_console(verb: str, decision: str) -> None:
    with shop_stack([], {"revenue": tolerant()}) as (aws, _receivers):
        credentials = LocalCredentials()
        server = ConsoleServer(aws, credentials, port=0).start()
        try:
            person = ConsolePerson(server.url, credentials, verb)
            assert aws.clock is not None
            aws.clock.listeners.append(person.on_clock)
            _execution, target = run_canary(aws, "revenue", VersionBehaviour(), REVENUE_DOWN)
            timeline = person._get(f"/api/deployments/{DEP}/timeline?limit=200")["items"]
        finally:
            server.stop()
        assert person.answer is not None and person.seen is not None, "the hold was never answered"
        assert person.answer.status_code == 200, person.answer.text
        seen = person.seen
        assert seen["state"] == "pending" and seen["answerable"] and seen["action"] == "rollback"
        assert seen["hold"] is not None and seen["hold"]["weight_percent"] > 0 and not seen["hold"]["ended"]
        assert datetime.fromisoformat(seen["hold"]["since"]) == person.hold_began
        assert person.answer.json()["decided_by"] == "local-operator"

        record = DeploymentRepository().get_deployment(DEP)
        assert record.decision == decision, (record.decision, record.decision_reason)
        alias = LambdaTrafficShifter(target).current()
        live = target.stable_version if decision == "rolled_back" else target.new_version
        assert (alias.function_version, alias.additional_weights) == (live, {})
        answered = trail(DEP, f"remediation_{verb}d" if verb == "approve" else "remediation_rejected")
        assert [e.actor for e in answered] == ["local-operator"]
        ended = trail(DEP, "promotion_hold_ended")
        assert len(ended) == 1 and ended[0].details["outcome"] == decision, ended
        titles = [t["title"] for t in timeline]
        said = "approved" if verb == "approve" else "rejected"
        assert any(t.startswith(f"rollback {said} by local-operator") for t in titles), titles
        assert any(t.startswith("promotion held at ") for t in titles), titles
        assert any(t.startswith(f"promotion hold ended: {decision.replace('_', ' ')}") for t in titles), titles
