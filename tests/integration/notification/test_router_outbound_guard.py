"""DNS rebinding through the path users take: a deployment event routed in production mode to a
Slack channel whose URL is an SSM SecureString, delivered over HTTPS to a server on 127.0.0.x.

The fake DNS (``socket.getaddrinfo`` patched for the test only) answers the webhook's name with
a public address first and 127.0.0.1 afterwards; the public address is served on 127.0.0.3.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from notif_support import Aws, make_event
from pytest_httpserver import HTTPServer
from tls_support import FakeDns, https_servers, make_tls

from deployguard.models import DeliveryStatus, EventType
from deployguard.notification.delivery import Deliverer
from deployguard.notification.settings import NotificationSettings

NAME = "hooks.slack.example.com"
PUBLIC = "93.184.216.34"


@pytest.fixture
def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeDns, HTTPServer, HTTPServer]]:
    tls = make_tls(tmp_path, [NAME])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_file))
    with https_servers(tls, ["127.0.0.1", "127.0.0.3"]) as (internal, public):
        for server in (internal, public):
            server.expect_request("/services/T0/B0/secret", method="POST").respond_with_data("ok")
        dns = FakeDns(answers={NAME: [[PUBLIC], ["127.0.0.1"]]}, routes={PUBLIC: "127.0.0.3"})
        monkeypatch.setattr(socket, "getaddrinfo", dns.getaddrinfo)
        yield dns, internal, public


def test_a_rebinding_webhook_is_delivered_only_to_the_checked_address(
    aws: Aws, servers: tuple[FakeDns, HTTPServer, HTTPServer]
) -> None:
    dns, internal, public = servers
    url = f"https://{NAME}:{public.port}/services/T0/B0/secret"
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name="/deployguard/slack", Value=url, Type="SecureString")
    settings = NotificationSettings.model_validate(
        {
            "allowed_hosts": [NAME],
            "channels": {"ops-slack": {"type": "slack", "url_parameter": "/deployguard/slack"}},
            "routes": [{"channels": ["ops-slack"]}],
            "noise": {"cooldown_seconds": 0},
        }
    )
    deliverer = Deliverer(settings.delivery, settings.allowed_hosts, False, sleep=aws.sleep)
    router = aws.router(settings, local_mode=False, deliverer=deliverer)
    outcomes = []
    for i, event_type in enumerate([EventType.DEPLOYMENT_FAILED, EventType.ROLLBACK_COMPLETED, EventType.ALERT]):
        dns.lookups.clear()  # each delivery resolves once: the public answer; any later lookup gets 127.0.0.1
        [outcome] = router.route(make_event(event_type, deployment_id=f"dg-{i}"))
        outcomes.append(outcome.status)
        assert dns.lookups.count(NAME) == 1
    assert outcomes == [DeliveryStatus.DELIVERED] * 3
    assert len(public.log) == 3 and not internal.log

    dns.answers[NAME] = [["127.0.0.1"]]  # the name now points inside: refused, kept in the dead-letter queue
    dns.lookups.clear()
    [outcome] = router.route(make_event(EventType.DEPLOYMENT_FAILED, deployment_id="dg-9"))
    assert outcome.status is DeliveryStatus.DEAD_LETTERED
    assert "resolves to a loopback address" in (outcome.error or "") and "secret" not in (outcome.error or "")
    assert not internal.log and len(aws.dlq_messages()) == 1
