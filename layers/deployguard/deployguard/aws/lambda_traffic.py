"""Traffic shifting on a Lambda alias (``RoutingConfig.AdditionalVersionWeights``).

The alias points at the stable version; the new version receives ``weight`` of the
traffic through the routing configuration. Promotion points the alias at the new
version with no routing; rollback points it at the stable version with no routing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from deployguard.aws import clients
from deployguard.exceptions import TrafficShiftError

if TYPE_CHECKING:
    from deployguard.models import LambdaTarget


class AliasMovedError(TrafficShiftError):
    """An UpdateAlias made only if the alias was still as read (its ``RevisionId``) found it moved since:
    Lambda refused it (``PreconditionFailedException``), nothing changed."""


@dataclass(frozen=True)
class AliasState:
    function_version: str
    additional_weights: dict[str, float]
    revision: str | None = field(default=None, compare=False)  # GetAlias's RevisionId: UpdateAlias only if unchanged

    def routes(self, target: LambdaTarget, weight: float) -> bool:
        """Whether the alias routes ``weight`` (0..1) of its traffic to ``target``'s new version and the rest to
        its stable version, and nothing else (0: all on stable, no routing)."""
        if self.function_version != target.stable_version:
            return False
        if weight <= 0:
            return not any(self.additional_weights.values())
        return set(self.additional_weights) == {target.new_version} and (
            abs(self.additional_weights[target.new_version] - weight) < 1e-4
        )

    def split_between(self, target: LambdaTarget) -> bool:
        """Whether the alias splits its traffic between ``target``'s two versions (stable and new), and routes no
        other: some but not all on the new version. What a promoted deployment's alias must not be left at (a late
        move landed after the promotion); an alias wholly on one version, or routing a version the deployment
        never shipped, is not."""
        versions = {self.function_version, *self.additional_weights}
        return versions <= {target.stable_version, target.new_version} and 0 < self.weight_of(target.new_version) < 1

    def weight_of(self, version: str) -> float:
        if self.function_version == version and not self.additional_weights:
            return 1.0
        if self.function_version == version:
            return 1.0 - sum(self.additional_weights.values())
        return self.additional_weights.get(version, 0.0)


class LambdaTrafficShifter:
    def __init__(self, target: LambdaTarget) -> None:
        self.target = target

    def _update(
        self, function_version: str, weights: dict[str, float], expected: AliasState | None = None
    ) -> AliasState:
        """UpdateAlias; with ``expected`` (an alias as read) only while the alias is still that revision:
        :class:`AliasMovedError` when it moved since (another writer's move is never overwritten)."""
        guard = {"RevisionId": expected.revision} if expected is not None and expected.revision else {}
        try:
            clients.client("lambda").update_alias(
                FunctionName=self.target.function_name,
                Name=self.target.alias,
                FunctionVersion=function_version,
                RoutingConfig={"AdditionalVersionWeights": weights},
                **guard,
            )
        except (ClientError, BotoCoreError) as exc:
            if expected is not None and guard and aws_error_code(exc) == "PreconditionFailedException":
                raise AliasMovedError(
                    f"{self.target.function_name}:{self.target.alias} moved since it was read "
                    f"({expected.function_version} {expected.additional_weights or ''}): not routed to "
                    f"{weights or 'all'} on version {function_version}"
                ) from exc
            raise TrafficShiftError(
                f"{self.target.function_name}:{self.target.alias}: cannot route {weights or 'all'} "
                f"to version {function_version}: {exc}"
            ) from exc
        return AliasState(function_version, weights)

    def shift(self, weight: float, expected: AliasState | None = None) -> AliasState:
        """Send ``weight`` (0..1, exclusive) of the alias's traffic to the new version; with ``expected`` (the
        alias as read, :meth:`current`) only if nobody moved it since (:class:`AliasMovedError`)."""
        if not 0.0 < weight < 1.0:
            raise TrafficShiftError(f"canary weight {weight} must be between 0 and 1 (exclusive)")
        return self._update(self.target.stable_version, {self.target.new_version: round(weight, 4)}, expected)

    def promote(self, expected: AliasState | None = None) -> AliasState:
        """All traffic to the new version; with ``expected`` only if nobody moved the alias since it was read."""
        return self._update(self.target.new_version, {}, expected)

    def restore(self, routing: AliasState, expected: AliasState) -> AliasState:
        """Route the alias as ``routing`` routed it (a move taken back), only while it is still ``expected``."""
        return self._update(routing.function_version, dict(routing.additional_weights), expected)

    def rollback(self) -> AliasState:
        return self._update(self.target.stable_version, {})

    def rollback_verified(self) -> AliasState:
        """Roll back, then read the alias back: TrafficShiftError unless it routes 100% to the stable version."""
        self.rollback()
        return self._verify(self.target.stable_version, "rollback")

    def promote_verified(self, expected: AliasState | None = None) -> AliasState:
        """Promote, then read the alias back: TrafficShiftError unless it routes 100% to the new version."""
        self.promote(expected)
        return self._verify(self.target.new_version, "promotion")

    def _verify(self, version: str, after: str) -> AliasState:
        alias = self.current()
        if alias.weight_of(version) != 1.0:
            raise TrafficShiftError(
                f"{self.target.function_name}:{self.target.alias} routes {alias.function_version} "
                f"{alias.additional_weights or ''} after {after}, not 100% version {version}"
            )
        return alias

    def current(self) -> AliasState:
        try:
            alias = clients.client("lambda").get_alias(FunctionName=self.target.function_name, Name=self.target.alias)
        except (ClientError, BotoCoreError) as exc:
            raise TrafficShiftError(f"{self.target.function_name}:{self.target.alias}: {exc}") from exc
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights", {}) or {}
        return AliasState(alias["FunctionVersion"], {k: float(v) for k, v in weights.items()}, alias.get("RevisionId"))


def aws_error_code(exc: BaseException) -> str | None:
    """AWS's short error code behind ``exc`` (``AccessDeniedException``, ``ThrottlingException``), what the
    console shows of it: AWS's message names the role, its ARN and the account, which readers need not see
    (it is logged). None when AWS did not answer the call that failed (a DeployGuard check of its own)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ClientError):
            return str(cause.response.get("Error", {}).get("Code") or "ClientError")[:64]
        if isinstance(cause, BotoCoreError):
            return type(cause).__name__
        cause = cause.__cause__
    return None
