"""Which resource a remediation changes, and whether DeployGuard may change it."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from deployguard.models import Deployment, EcsTarget, LambdaTarget


def target_id(deployment: Deployment) -> str:
    """``lambda:<function>`` or ``ecs:<cluster>/<service>``: the unit of locking and allowlisting."""
    target = deployment.target
    if isinstance(target, LambdaTarget):
        return f"lambda:{target.function_name}"
    assert isinstance(target, EcsTarget)
    return f"ecs:{target.cluster}/{target.service}"


class TargetAllowlist:
    """Globs of targets DeployGuard may change; nothing else is ever remediated.

    Built from ``remediation.allowed_targets`` and the functions and ECS services of the
    configured services (``services.<name>.function_name``, ``services.<name>.ecs_service``).
    """

    def __init__(
        self, patterns: Iterable[str] = (), functions: Iterable[str] = (), ecs_services: Iterable[str] = ()
    ) -> None:
        self.patterns = sorted(
            {*patterns, *(f"lambda:{f}" for f in functions if f), *(f"ecs:{e}" for e in ecs_services if e)}
        )

    def allows(self, target: str) -> bool:
        return any(fnmatch.fnmatchcase(target, pattern) for pattern in self.patterns)
