"""Secrets of the notification channels, read with Powertools Parameters and cached.

SSM Parameter Store (``SecureString``, decrypted) or Secrets Manager; ``name#key``
picks one key of a JSON secret. Values are returned as :class:`SecretStr` so that a
stray ``repr`` or log line shows ``**********``, and error messages name the
parameter, never the value.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from pydantic import SecretStr

from deployguard.aws.parameters import Parameters
from deployguard.exceptions import ConfigError

if TYPE_CHECKING:
    from deployguard.notification.settings import SecretSource

DEFAULT_MAX_AGE_SECONDS = 300


class SecretResolver:
    """Resolves :class:`SecretSource` values; one per container, cache ``max_age`` seconds."""

    def __init__(self, local_mode: bool = False, max_age: int = DEFAULT_MAX_AGE_SECONDS) -> None:
        self.local_mode = local_mode
        self.max_age = max_age
        self._parameters = Parameters()

    def check_allowed(self, source: SecretSource, where: str) -> None:
        if source.is_literal and not self.local_mode:
            raise ConfigError(
                f"a literal {source.field} is allowed only in local mode (DEPLOYGUARD_LOCAL=1); "
                f"use {source.field}_parameter (SSM SecureString) or {source.field}_secret (Secrets Manager)",
                field=f"{where}.{source.field}",
            )

    def resolve(self, source: SecretSource, where: str) -> SecretStr:
        self.check_allowed(source, where)
        if source.value is not None:
            return SecretStr(source.value)
        try:
            if source.parameter:
                value = self._parameters.parameter(source.parameter, self.max_age)
            else:
                assert source.secret is not None
                name, _, key = source.secret.partition("#")
                value = self._parameters.secret(name, self.max_age)
                if key:
                    value = self._json_key(value, key, source, where)
        except GetParameterError as exc:
            raise ConfigError(
                f"cannot read {source.describe()}: {type(exc.__cause__ or exc).__name__}",
                field=f"{where}.{source.field}",
            ) from exc
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{source.describe()} is empty", field=f"{where}.{source.field}")
        return SecretStr(value.strip())

    @staticmethod
    def _json_key(value: Any, key: str, source: SecretSource, where: str) -> str:
        try:
            document = json.loads(value) if isinstance(value, str | bytes) else value
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{source.describe()} is not JSON, so key {key!r} cannot be read", field=f"{where}.{source.field}"
            ) from exc
        if not isinstance(document, dict) or not isinstance(document.get(key), str):
            raise ConfigError(f"{source.describe()} has no string key {key!r}", field=f"{where}.{source.field}")
        return str(document[key])
