"""The local receivers of the demo: real servers, one line per delivery, counts per channel."""

from __future__ import annotations

import json

import requests

from deployguard.notification.webhook import sign
from deployguard_local.receivers import Behaviour, local_receivers, summarize


def test_receivers_answer_like_the_services_and_count() -> None:
    lines: list[str] = []
    with local_receivers(signing_key="k", echo=lines.append) as receivers:
        urls = receivers.urls
        assert all(url.startswith("http://127.0.0.1:") for url in urls.values())
        assert requests.post(urls["slack"], json={"text": "hi", "blocks": []}, timeout=5).text == "ok"
        assert requests.post(urls["teams"], json={"type": "message", "attachments": []}, timeout=5).text == "1"
        pd = requests.post(urls["pagerduty"], json={"event_action": "trigger", "dedup_key": "d"}, timeout=5)
        assert pd.status_code == 202 and pd.json() == {
            "status": "success",
            "message": "Event processed",
            "dedup_key": "d",
        }
        body = json.dumps({"type": "event", "event": {"event_type": "deployment.failed"}}).encode()
        bad = requests.post(urls["webhook"], data=body, headers={"X-DeployGuard-Timestamp": "1"}, timeout=5)
        assert bad.status_code == 401
        good = requests.post(
            urls["webhook"],
            data=body,
            headers={"X-DeployGuard-Timestamp": "1", "X-DeployGuard-Signature": sign("k", "1", body)},
            timeout=5,
        )
        assert good.status_code == 200
        assert receivers.counts() == {"slack": 1, "teams": 1, "pagerduty": 1, "webhook": 1}
        assert receivers.summary() == "deliveries per channel: slack=1, teams=1, pagerduty=1, webhook=1"
    assert lines[0] == "[slack] hi (0 blocks)" and lines[2] == "[pagerduty] trigger d"
    assert lines[3].startswith("[webhook] deployment.failed")


def test_down_and_throttling_receivers() -> None:
    behaviours = {"slack": Behaviour(mode="down"), "teams": Behaviour(mode="throttle", retry_after="9")}
    with local_receivers(behaviours, echo=None) as receivers:
        try:
            requests.post(receivers.urls["slack"], json={}, timeout=2)
            raise AssertionError("a down receiver must refuse connections")
        except requests.ConnectionError:
            assert receivers.counts()["slack"] == 0
        throttled = requests.post(receivers.urls["teams"], json={}, timeout=2)
        assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "9"
        assert receivers.summary().endswith("(down: slack)")


def test_summaries() -> None:
    card = {"attachments": [{"content": {"body": [{"text": "Deployment Failed: checkout 42"}]}}]}
    assert summarize("teams", card) == "[teams] Deployment Failed: checkout 42 (adaptive card)"
    assert summarize("slack", []) == "[slack] list payload"
