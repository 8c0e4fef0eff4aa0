"""Every domain exception DeployGuard raises, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class DeployGuardError(Exception):
    """Base of all DeployGuard errors."""


class ConfigError(DeployGuardError):
    """A configuration file or value is wrong; the message names file and field."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None) -> None:
        self.source = source
        self.field = field
        where = ", ".join(p for p in (f"file {source}" if source else "", f"field {field}" if field else "") if p)
        super().__init__(f"{where}: {message}" if where else message)


class InvalidEventError(DeployGuardError):
    """An incoming event does not have the shape its trigger promises; ``field`` names what is wrong."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class ConflictError(DeployGuardError):
    """A conditional write lost a race: somebody else changed the item first."""


class NotFoundError(DeployGuardError):
    """A deployment, incident or other record does not exist."""


class TrafficShiftError(DeployGuardError):
    """Moving traffic on a Lambda alias or ECS service failed."""


class ScenarioError(DeployGuardError):
    """A replay scenario file is malformed; the message names file and field."""


class DeliveryError(DeployGuardError):
    """A notification could not be delivered to a channel."""


class ValidationCheckError(DeployGuardError):
    """A pre- or post-traffic validation check could not run."""


class CodeDeployError(DeployGuardError):
    """CodeDeploy answered an error, or could not be reached."""


class LoadBalancerError(DeployGuardError):
    """An Elastic Load Balancing call failed, or a target group is not behind a load balancer."""


class EcsError(DeployGuardError):
    """An ECS call failed."""


class MetricsConfigError(DeployGuardError):
    """The metrics configured for a service cannot be read for its deployment target."""


class ControlStateError(DeployGuardError):
    """A control verb does not apply to the deployment as it is (e.g. promoting a rolled-back canary)."""


class TrafficChecksUnavailableError(DeployGuardError):
    """The traffic checks due could not be listed (the table or its index failed): none was checked."""


class JudgeStateError(DeployGuardError):
    """A stored judge state does not fit the window or settings it is stepped with."""


class QueryError(DeployGuardError):
    """A filter or cursor is not valid; the message names the field."""


class StepFunctionsError(DeployGuardError):
    """Step Functions refused or could not be reached (``code``: its error code, when it answered one)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        self.code = code
        super().__init__(message)


class NotAuthorizedError(DeployGuardError):
    """No identity came with the request: nothing is served without one."""


class ForbiddenError(DeployGuardError):
    """The caller is known but may not do this (a read-only caller asking to write)."""


class RemediationError(DeployGuardError):
    """An action could not be carried out (the AWS call failed, or its effect is not there)."""


class NotApplicableError(DeployGuardError):
    """The action makes no sense for this deployment (e.g. stopping CodeDeploy for a Step Functions canary)."""


class ExpressionError(DeployGuardError):
    """An expression does not parse or does not type-check; ``column`` is 1-based."""

    def __init__(self, message: str, column: int, rule: str | None = None) -> None:
        self.reason = message
        self.column = column
        self.rule = rule
        prefix = f"rule {rule!r}: " if rule else ""
        super().__init__(f"{prefix}column {column}: {message}")

    def for_rule(self, rule: str) -> ExpressionError:
        return ExpressionError(self.reason, self.column, rule)


class IncidentStateError(DeployGuardError):
    """The incident is not in a state that allows the change (e.g. acknowledging a resolved one)."""


class TrackerError(DeployGuardError):
    """A tracker refused or failed a call; the message names the tracker and the HTTP status."""


class LambdaError(DeployGuardError):
    """A Lambda call (other than moving an alias's traffic) failed; the message names the operation."""


Problem = tuple[tuple[int | str, ...], str]  # (location inside the model being validated, message)


def problems_error(title: str, problems: Sequence[Problem]) -> ValidationError:
    """One pydantic ``ValidationError`` holding each problem at its place (pydantic nests it under the
    validated field), raised by a validator that reports every problem it finds, not its first."""
    from pydantic import ValidationError
    from pydantic_core import InitErrorDetails, PydanticCustomError

    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{message}", {"message": message}), loc=loc, input=None
            )
            for loc, message in problems
        ],
    )
