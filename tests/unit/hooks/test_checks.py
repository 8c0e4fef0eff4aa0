"""Each kind of check against real local servers (HTTP, TCP) or moto (CloudWatch), with deadlines."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from deployguard.aws import clients
from deployguard.hooks.checks import CheckContext, run_check
from deployguard.hooks.settings import CheckSettings
from deployguard.models import Deployment, LambdaTarget
from deployguard_local.chaos.faults import never_answering_server


def _ctx(local_mode: bool = True) -> CheckContext:
    target = LambdaTarget(function_name="orders", alias="live", stable_version="1", new_version="2")
    return CheckContext(Deployment(service="orders", environment="test", version="2", target=target), [], local_mode)


def _http(url: str, **kw: Any) -> CheckSettings:
    settings = {"retries": 0, "timeout_seconds": 2, "allowed_hosts": ["localhost", "127.0.0.1"], **kw}
    return CheckSettings(name="health", type="http", url=url, **settings)


def _tcp_loopback(port: int) -> CheckSettings:
    return CheckSettings(name="db", type="tcp", host="127.0.0.1", port=port, retries=0, allowed_hosts=["127.0.0.1"])


def _deadline(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


def test_http_health_passes_on_status_and_body_fields(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/health").respond_with_json({"status": "ok", "db": "up"})
    result = run_check(_http(httpserver.url_for("/health"), expect_fields={"status": "ok"}), _ctx(), _deadline())
    assert result.status == "passed" and result.attempts == 1 and result.details["status"] == 200


def test_http_health_fails_on_a_body_field(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/health").respond_with_json({"status": "degraded"})
    result = run_check(_http(httpserver.url_for("/health"), expect_fields={"status": "ok"}), _ctx(), _deadline())
    assert result.status == "failed" and "'status' is 'degraded'" in result.message


def test_http_health_fails_when_slower_than_the_threshold(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(0.2)
        return Response("{}", status=200, content_type="application/json")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    result = run_check(_http(httpserver.url_for("/slow"), max_response_ms=50), _ctx(), _deadline())
    assert result.status == "failed" and "over 50 ms" in result.message


def test_http_waits_until_healthy(httpserver: HTTPServer) -> None:
    calls = {"n": 0}

    def warming(request: Request) -> Response:
        calls["n"] += 1
        return Response("{}", status=200 if calls["n"] >= 3 else 503, content_type="application/json")

    httpserver.expect_request("/warm").respond_with_handler(warming)
    check = _http(httpserver.url_for("/warm"), wait_until_healthy_seconds=5, poll_interval_seconds=0.05)
    result = run_check(check, _ctx(), _deadline())
    assert result.status == "passed" and result.details["polls"] == 3


def test_wait_for_healthy_gives_up_at_its_deadline(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/down").respond_with_data("no", status=503)
    check = _http(httpserver.url_for("/down"), wait_until_healthy_seconds=0.3, poll_interval_seconds=0.05)
    result = run_check(check, _ctx(), _deadline())
    # gave up at its 0.3 s, not at the check's 10 s deadline (a bound far from any timer)
    assert result.status == "failed" and "status 503" in result.message
    assert result.duration_ms < 5_000


@pytest.fixture
def hanging_server() -> Iterator[str]:
    with never_answering_server("/hang") as url:
        yield url


def test_a_hanging_check_is_cut_at_the_deadline_and_retries_stop(hanging_server: str) -> None:
    pauses: list[float] = []
    check = _http(hanging_server, timeout_seconds=30, retries=5, backoff_seconds=0.1)
    result = run_check(check, _ctx(), _deadline(0.6), sleep=pauses.append)
    # the server never answers: the deadline, not the check's 30 s timeout, ended it, before its retries
    assert result.status == "failed" and "no time left" in result.message
    assert 1 <= result.attempts <= 2 and all(p <= 0.6 for p in pauses)


def test_retries_back_off_exponentially_then_warn_when_not_critical(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/err").respond_with_data("x", status=500)
    pauses: list[float] = []
    check = _http(httpserver.url_for("/err"), retries=3, backoff_seconds=0.5, critical=False)
    result = run_check(check, _ctx(), _deadline(), sleep=pauses.append)
    assert result.status == "warned" and result.attempts == 4 and pauses == [0.5, 1.0, 2.0]


def test_metadata_service_urls_are_refused_without_a_request() -> None:
    result = run_check(_http("http://169.254.169.254/latest/meta-data/"), _ctx(local_mode=False), _deadline())
    assert result.status == "failed" and "ConfigError" in result.message and "refused" in result.message


def test_tcp_dependency_reachable_and_unreachable() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    ok = run_check(_tcp_loopback(port), _ctx(), _deadline())
    listener.close()
    down = run_check(_tcp_loopback(port), _ctx(), _deadline())
    assert ok.status == "passed" and "reachable" in ok.message
    assert down.status == "failed" and "unreachable" in down.message


def test_tcp_to_a_private_address_is_refused_outside_local_mode() -> None:
    check = CheckSettings(name="db", type="tcp", host="10.0.0.5", port=5432, retries=0, allowed_hosts=["10.0.0.5"])
    result = run_check(check, _ctx(local_mode=False), _deadline())
    assert result.status == "failed" and "private" in result.message


def test_alarms_in_alarm_fail_the_check(cd_aws: None) -> None:
    cloudwatch = clients.client("cloudwatch")
    for name in ("orders-errors", "orders-latency", "other-errors"):
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            MetricName="Errors",
            Namespace="AWS/Lambda",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanThreshold",
        )
    check = CheckSettings(name="alarms", type="alarms", alarm_prefix="orders-", retries=0)
    assert run_check(check, _ctx(), _deadline()).status == "passed"
    cloudwatch.set_alarm_state(AlarmName="orders-latency", StateValue="ALARM", StateReason="test")
    cloudwatch.set_alarm_state(AlarmName="other-errors", StateValue="ALARM", StateReason="test")
    result = run_check(check, _ctx(), _deadline())
    assert result.status == "failed" and result.message == "ValidationCheckError: in ALARM: orders-latency"
