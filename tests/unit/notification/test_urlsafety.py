from __future__ import annotations

import pytest

from deployguard.exceptions import ConfigError
from deployguard.notification.urlsafety import host_allowed, redact, validate_outbound_url

ALLOW = ["hooks.slack.com", "*.webhook.office.com", "hooks.example.com", "10.0.0.5", "169.254.169.254"]
SECRET_PATH = "/services/T000/B000/SeCrEtToKeN"


def test_https_allowlisted_host_passes() -> None:
    url = f"https://hooks.slack.com{SECRET_PATH}"
    assert validate_outbound_url(url, ALLOW, local_mode=False) == url
    assert validate_outbound_url("https://acme.webhook.office.com/x", ALLOW, local_mode=False)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"http://hooks.slack.com{SECRET_PATH}", "https is required"),
        (f"https://evil.example.org{SECRET_PATH}", "not on the allowlist"),
        ("https://webhook.office.com/x", "not on the allowlist"),  # the wildcard wants a subdomain
        (f"https://user:pw@hooks.slack.com{SECRET_PATH}", "credentials"),
        ("https://10.0.0.5/hook", "private address"),
        ("https://169.254.169.254/latest/meta-data/", "link-local address"),
        ("http://127.0.0.1:8080/hook", "https is required"),
        ("ftp://hooks.slack.com/x", "scheme 'ftp' not allowed"),
        ("https:///nohost", "no host"),
    ],
)
def test_refused_outside_local_mode(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_outbound_url(url, ALLOW, local_mode=False, field="channels.x.url")
    assert reason in str(caught.value)
    assert caught.value.field == "channels.x.url"
    assert "SeCrEtToKeN" not in str(caught.value)


def test_local_mode_allows_http_and_listed_loopback_only() -> None:
    assert validate_outbound_url("http://127.0.0.1:9000/hook", ["127.0.0.1"], local_mode=True)
    assert validate_outbound_url("http://localhost:9000/hook", ["localhost"], local_mode=True)
    with pytest.raises(ConfigError, match=r"need 127\.0\.0\.1 on the allowlist"):
        validate_outbound_url("http://127.0.0.1:9000/hook", [], local_mode=True)
    with pytest.raises(ConfigError, match="private address"):
        validate_outbound_url("http://10.0.0.5/hook", ALLOW, local_mode=True)
    with pytest.raises(ConfigError, match="not on the allowlist"):
        validate_outbound_url("http://example.net/hook", ALLOW, local_mode=True)


def test_resolution_to_a_private_address_is_refused() -> None:
    def rebinding(host: str) -> list[str]:
        return ["203.0.113.10", "192.168.1.20"]

    with pytest.raises(ConfigError, match="resolves to a private address"):
        validate_outbound_url("https://hooks.example.com/x", ALLOW, False, resolve=True, resolver=rebinding)
    with pytest.raises(ConfigError, match="resolves to a link-local address"):
        validate_outbound_url(
            "https://hooks.example.com/x", ALLOW, False, resolve=True, resolver=lambda h: ["169.254.169.254"]
        )
    assert validate_outbound_url(
        "https://hooks.example.com/x", ALLOW, False, resolve=True, resolver=lambda h: ["93.184.216.34"]
    )


def test_unresolvable_host_is_refused() -> None:
    def fails(host: str) -> list[str]:
        raise OSError("nodename nor servname provided")

    with pytest.raises(ConfigError, match="does not resolve"):
        validate_outbound_url("https://hooks.example.com/x", ALLOW, False, resolve=True, resolver=fails)


def test_ipv4_mapped_ipv6_metadata_address_is_refused() -> None:
    with pytest.raises(ConfigError, match="IPv4-mapped"):
        validate_outbound_url("https://[::ffff:169.254.169.254]/", ["::ffff:169.254.169.254"], False)


def test_helpers() -> None:
    assert redact(f"https://hooks.slack.com{SECRET_PATH}?token=x") == "https://hooks.slack.com/…"
    assert host_allowed("a.b.webhook.office.com", ["*.webhook.office.com"])
    assert not host_allowed("webhook.office.com.evil.com", ["*.webhook.office.com"])
