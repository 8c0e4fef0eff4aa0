from __future__ import annotations

import json

import boto3
import pytest
from notif_support import Aws

from deployguard.exceptions import ConfigError
from deployguard.notification.secrets import SecretResolver
from deployguard.notification.settings import SecretSource


def test_ssm_securestring_and_secrets_manager_json_key(aws: Aws) -> None:
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/deployguard/slack-url", Value="https://hooks.slack.com/services/T/B/s3cr3t", Type="SecureString"
    )
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="deployguard/pagerduty", SecretString=json.dumps({"routing_key": "R0UT1NG"})
    )
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(Name="plain", SecretString="k3y")
    resolver = SecretResolver()
    url = resolver.resolve(SecretSource(field="url", parameter="/deployguard/slack-url"), "channels.s")
    assert url.get_secret_value().endswith("/s3cr3t") and "s3cr3t" not in repr(url)
    key = resolver.resolve(SecretSource(field="routing_key", secret="deployguard/pagerduty#routing_key"), "c")
    assert key.get_secret_value() == "R0UT1NG"
    assert resolver.resolve(SecretSource(field="signing_key", secret="plain"), "c").get_secret_value() == "k3y"


def test_values_are_cached(aws: Aws) -> None:
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name="/p", Value="first", Type="SecureString")
    resolver = SecretResolver(max_age=300)
    source = SecretSource(field="url", parameter="/p")
    assert resolver.resolve(source, "c").get_secret_value() == "first"
    ssm.put_parameter(Name="/p", Value="second", Type="SecureString", Overwrite=True)
    assert resolver.resolve(source, "c").get_secret_value() == "first"


def test_missing_secret_names_the_field_not_a_value(aws: Aws) -> None:
    with pytest.raises(ConfigError) as caught:
        SecretResolver().resolve(SecretSource(field="url", parameter="/missing"), "notifications.channels.s")
    assert caught.value.field == "notifications.channels.s.url"
    assert "ssm:/missing" in str(caught.value)
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(Name="notjson", SecretString="x")
    with pytest.raises(ConfigError, match="not JSON"):
        SecretResolver().resolve(SecretSource(field="url", secret="notjson#url"), "c")


def test_literal_secrets_only_in_local_mode() -> None:
    literal = SecretSource(field="url", value="http://127.0.0.1:1/x")
    with pytest.raises(ConfigError, match="only in local mode"):
        SecretResolver(local_mode=False).resolve(literal, "notifications.channels.s")
    assert SecretResolver(local_mode=True).resolve(literal, "c").get_secret_value() == "http://127.0.0.1:1/x"
