"""Every SSRF bypass of issue 16, tried against real servers on 127.0.0.x with an in-process fake DNS.

The fake DNS (``socket.getaddrinfo`` patched for the test only) answers names as scripted;
the public address 93.184.216.34 is "served" by an HTTPS server on 127.0.0.3, and the
internal target an attacker wants is an HTTPS server on 127.0.0.1 on the same port. A
request that goes where it was checked reaches 127.0.0.3; one that resolves the name
again reaches 127.0.0.1.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr, ValidationError
from pytest_httpserver import HTTPServer
from tls_support import FakeDns, Tls, https_servers, make_tls

from deployguard.alerts.settings import IssueTrackerSettings
from deployguard.exceptions import ConfigError
from deployguard.hooks.checks import CheckContext, run_check
from deployguard.hooks.settings import CheckSettings
from deployguard.models import Deployment, LambdaTarget
from deployguard.notification.base import HttpMessage
from deployguard.notification.delivery import Deliverer
from deployguard.notification.settings import DeliverySettings, NotificationSettings
from deployguard.notification.urlsafety import check_outbound

NAME = "hooks.example.com"
PUBLIC = "93.184.216.34"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"), [NAME, "db.example.com"])


@dataclass
class Net:
    dns: FakeDns
    public: HTTPServer  # 127.0.0.3, stands for PUBLIC
    internal: HTTPServer  # 127.0.0.1, what a second DNS answer points to
    port: int


@pytest.fixture
def net(tls: Tls, monkeypatch: pytest.MonkeyPatch) -> Iterator[Net]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_file))
    with https_servers(tls, ["127.0.0.1", "127.0.0.3"]) as (internal, public):
        dns = FakeDns(
            answers={NAME: [[PUBLIC], ["127.0.0.1"]], "db.example.com": [[PUBLIC], ["127.0.0.1"]]},
            routes={PUBLIC: "127.0.0.3"},
        )
        monkeypatch.setattr(socket, "getaddrinfo", dns.getaddrinfo)
        for server in (internal, public):
            server.expect_request("/hook", method="POST").respond_with_data("ok")
            server.expect_request("/health").respond_with_json({"status": "ok"})
        yield Net(dns, public, internal, public.port)


def _deliver(url: str, allowlist: list[str], local_mode: bool = False) -> tuple[bool, str | None]:
    deliverer = Deliverer(DeliverySettings(max_attempts=1), allowlist, local_mode, sleep=lambda s: None)
    result = deliverer.deliver(HttpMessage.json(SecretStr(url), {"text": "x"}), field="channels.ops.url")
    return result.ok, result.error


def _ctx() -> CheckContext:
    target = LambdaTarget(function_name="orders", alias="live", stable_version="1", new_version="2")
    return CheckContext(Deployment(service="orders", environment="prod", version="2", target=target), [], False)


# --------------------------------------------------------------------------- DNS rebinding


def test_rebinding_webhook_goes_to_the_checked_address_with_sni_and_host(net: Net) -> None:
    for _ in range(3):
        net.dns.lookups.clear()
        ok, error = _deliver(f"https://{NAME}:{net.port}/hook", [NAME])
        assert ok, error
        assert net.dns.lookups.count(NAME) == 1  # resolved once; the connection used the checked address
    assert len(net.public.log) == 3 and not net.internal.log
    request = net.public.log[0][0]
    assert request.headers["Host"] == f"{NAME}:{net.port}"  # TLS verified the certificate of the name (SNI)


def test_second_answer_loopback_never_reached_even_on_retries(net: Net) -> None:
    net.dns.answers[NAME] = [["127.0.0.1"]]
    ok, error = _deliver(f"https://{NAME}:{net.port}/hook", [NAME])
    assert not ok and "resolves to a loopback address" in str(error) and "channels.ops.url" in str(error)
    assert not net.internal.log and not net.public.log


def test_hook_http_check_rebinding_goes_to_the_checked_address(net: Net) -> None:
    check = CheckSettings(name="health", type="http", url=f"https://{NAME}:{net.port}/health", retries=2,
                          backoff_seconds=0, allowed_hosts=[NAME])  # fmt: skip
    for _ in range(3):
        net.dns.lookups.clear()  # each run resolves once: public first, 127.0.0.1 on any later lookup
        result = run_check(check, _ctx(), time.monotonic() + 10, sleep=lambda s: None)
        assert result.status == "passed", result.message
        assert net.dns.lookups.count(NAME) == 1
    assert len(net.public.log) == 3 and not net.internal.log


def test_hook_tcp_check_connects_to_the_checked_address(net: Net) -> None:
    check = CheckSettings(name="db", type="tcp", host="db.example.com", port=net.port, retries=0,
                          allowed_hosts=["db.example.com"])  # fmt: skip
    accepted: list[str] = []
    real_create = socket.create_connection

    def spy(address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
        accepted.append(address[0])
        return real_create(address, *args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "create_connection", spy)
        result = run_check(check, _ctx(), time.monotonic() + 10)
    assert result.status == "passed", result.message
    assert accepted == [PUBLIC]  # the checked address, never the name (which now answers 127.0.0.1)


@pytest.mark.parametrize("kind", ["http", "tcp"])
def test_hook_checks_resolve_the_name_and_refuse_loopback(net: Net, kind: str) -> None:
    net.dns.answers["internal.example.com"] = [["127.0.0.1"]]
    if kind == "http":
        check = CheckSettings(name="c", type="http", url=f"https://internal.example.com:{net.port}/health",
                              retries=0, allowed_hosts=["internal.example.com"])  # fmt: skip
    else:
        check = CheckSettings(name="c", type="tcp", host="internal.example.com", port=net.port, retries=0,
                              allowed_hosts=["internal.example.com"])  # fmt: skip
    result = run_check(check, _ctx(), time.monotonic() + 10)
    assert result.status == "failed" and "resolves to a loopback address" in result.message
    assert not net.internal.log


# --------------------------------------------------------------------------- literal forms


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0", "0x7f.1", "017700000001"])
@pytest.mark.parametrize("kind", ["http", "tcp"])
def test_legacy_numeric_hosts_are_refused_by_the_hook_checks(net: Net, host: str, kind: str) -> None:
    if kind == "http":
        check = CheckSettings(name="c", type="http", url=f"https://{host}:{net.port}/health", retries=0,
                              allowed_hosts=[host])  # fmt: skip
    else:
        check = CheckSettings(name="c", type="tcp", host=host, port=net.port, retries=0, allowed_hosts=[host])
    result = run_check(check, _ctx(), time.monotonic() + 10)
    assert result.status == "failed" and "numeric host must be a dotted-quad" in result.message
    assert not net.internal.log and not net.dns.lookups


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("[2002:a9fe:a9fe::]", "6to4"),  # 169.254.169.254 in 6to4
        ("[64:ff9b::a9fe:a9fe]", "NAT64"),
        ("[64:ff9b:1::a9fe:a9fe]", "NAT64"),
        ("[2001:0:4136:e378:8000:63bf:3fff:fdd2]", "Teredo"),
        ("[::ffff:127.0.0.1]", "IPv4-mapped"),
        ("[::ffff:a9fe:a9fe]", "IPv4-mapped"),
        ("[::127.0.0.1]", "IPv4-compatible"),
        ("[::1]", "loopback"),
        ("[fe80::1]", "link-local"),
        ("[fd00::1]", "private"),
        ("[ff02::1]", "multicast"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "non-global"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_unsafe_literals_are_refused_even_when_listed(host: str, reason: str) -> None:
    bare = host.strip("[]")
    with pytest.raises(ConfigError, match=reason):
        check_outbound(f"https://{host}/x", [bare], local_mode=False)


@pytest.mark.parametrize("answer", ["2002:a9fe:a9fe::", "64:ff9b::7f00:1", "::ffff:10.0.0.1", "10.1.2.3"])
def test_names_resolving_to_embedded_or_private_addresses_are_refused(answer: str) -> None:
    with pytest.raises(ConfigError, match="resolves to a"):
        check_outbound(f"https://{NAME}/x", [NAME], local_mode=False, resolver=lambda h: ["93.184.216.34", answer])


def test_a_label_over_63_characters_is_a_clean_error_through_delivery() -> None:
    host = "a" * 64 + ".example.com"
    ok, error = _deliver(f"https://{host}/hook", ["*.example.com"])
    assert not ok and "at most 63" in str(error) and "channels.ops.url" in str(error)
    ok, error = _deliver("https://" + "ü" * 70 + ".example.com/hook", ["*.example.com"])
    assert not ok and "not a valid host name" in str(error)


# --------------------------------------------------------------------------- allowlists


@pytest.mark.parametrize("pattern", ["*", "*.*", "**", "*.com", "?", "hooks-*.example.com", " * "])
def test_wildcard_only_allowlists_are_refused_at_load(pattern: str) -> None:
    with pytest.raises(ValidationError, match=r"allowed_hosts\.0"):
        NotificationSettings.model_validate({"allowed_hosts": [pattern]})
    with pytest.raises(ValidationError, match=r"allowed_hosts\.0"):
        CheckSettings(name="c", type="tcp", host="db.example.com", port=5432, allowed_hosts=[pattern])
    with pytest.raises(ValidationError, match=r"allowed_hosts\.0"):  # issue trackers (GitHub, Jira)
        IssueTrackerSettings.model_validate(
            {"type": "github", "repository": "acme/ops", "token": "t", "allowed_hosts": [pattern]}
        )


def test_wildcard_allowlist_refused_by_the_configuration_loader() -> None:
    from deployguard.config import parse_config

    with pytest.raises(ConfigError) as caught:
        parse_config('notifications: {allowed_hosts: ["*"]}', "conf.yaml")
    assert "file conf.yaml" in str(caught.value) and "notifications.allowed_hosts" in str(caught.value)
    assert "allows every host" in str(caught.value)


# --------------------------------------------------------------------------- local mode


def test_local_mode_reaches_a_loopback_receiver_only_when_listed() -> None:
    from deployguard_local.receivers import Behaviour, LocalReceiver

    receiver = LocalReceiver("webhook", Behaviour(), echo=None)
    receiver.start()
    try:
        ok, error = _deliver(receiver.url, ["127.0.0.1"], local_mode=True)
        assert ok, error
        ok, error = _deliver(receiver.url, ["hooks.slack.com"], local_mode=True)
        assert not ok and "need 127.0.0.1 on the allowlist" in str(error)
        ok, error = _deliver(receiver.url, ["127.0.0.1"], local_mode=False)
        assert not ok and "https is required" in str(error)
        ok, error = _deliver(receiver.url.replace("http:", "https:"), ["127.0.0.1"], local_mode=False)
        assert not ok and "loopback address" in str(error)
    finally:
        receiver.stop()
    assert receiver.delivered == 1


def test_local_mode_still_refuses_names_that_resolve_to_loopback() -> None:
    with pytest.raises(ConfigError, match="resolves to a loopback address"):
        check_outbound(f"http://{NAME}/x", [NAME, "127.0.0.1"], local_mode=True, resolver=lambda h: ["127.0.0.1"])


def test_redirects_are_not_followed(net: Net) -> None:
    net.public.clear()
    net.public.expect_request("/hook", method="POST").respond_with_data(
        "", status=302, headers={"Location": f"https://127.0.0.1:{net.port}/hook"}
    )
    ok, error = _deliver(f"https://{NAME}:{net.port}/hook", [NAME])
    assert not ok and "redirect not followed" in str(error) and not net.internal.log


def test_the_connection_is_refused_for_another_host(net: Net) -> None:
    from deployguard.notification.pinned_http import pinned_session

    target = check_outbound(f"https://{NAME}:{net.port}/hook", [NAME], local_mode=False)
    with pinned_session(target) as session, pytest.raises(Exception, match="not the checked target"):
        session.get(f"https://127.0.0.1:{net.port}/hook")
    assert not net.internal.log
