"""SSM Parameter Store and Secrets Manager through Powertools Parameters providers (their cache is the
owner's: one :class:`Parameters` per owner), over this container's clients (providers made again only
when the clients are: a new region, or the embedded AWS restarted)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider

from deployguard.aws import clients


class Parameters:
    def __init__(self) -> None:
        self._ssm: tuple[Any, SSMProvider] | None = None
        self._secrets: tuple[Any, SecretsProvider] | None = None

    def parameter(self, name: str, max_age: int) -> object:
        """An SSM parameter's value, decrypted (SecureString); Powertools' GetParameterError when it fails."""
        client = clients.client("ssm")
        if self._ssm is None or self._ssm[0] is not client:
            self._ssm = (client, SSMProvider(boto3_client=client))
        value: object = self._ssm[1].get(name, max_age=max_age, decrypt=True)
        return value

    def secret(self, name: str, max_age: int) -> object:
        """A Secrets Manager secret's string; Powertools' GetParameterError when it fails."""
        client = clients.client("secretsmanager")
        if self._secrets is None or self._secrets[0] is not client:
            self._secrets = (client, SecretsProvider(boto3_client=client))
        value: object = self._secrets[1].get(name, max_age=max_age)
        return value
