"""Remediation actions and the executor that runs them safely (allowlist, lock, attempts,
cooldown, circuit breaker, approvals); see :mod:`deployguard.remediation.executor`."""
