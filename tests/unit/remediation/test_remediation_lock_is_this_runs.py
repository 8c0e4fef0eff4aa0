"""The target's lock is released only by the claim that took it: every run of one incident and action names the
same holder, so a fresh token per claim (kept in the lock) is what tells two such runs apart. The real alert
engine and executor on moto, UpdateAlias slowed through botocore's event hooks, the simulated clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from grouped_support import alias, deployment, failing_verdict, per_deployment_engine
from remediation_support import make_function

from deployguard.aws import clients
from deployguard.remediation.store import LOCK

TARGET = "lambda:checkout-api"


def test_a_slow_rollback_never_releases_the_lock_a_later_run_of_the_same_incident_and_action_took(
    repo: Any, publisher: Any, sim_clock: Any
) -> None:
    v1, v2 = make_function("checkout-api")
    d1 = deployment(repo, "dg-1", v1, v2)
    engine = per_deployment_engine(repo, publisher)
    ttl = timedelta(seconds=engine.settings.remediation.lock_ttl_seconds)
    seen: dict[str, Any] = {}

    def slow_update(**_: Any) -> None:  # run A's UpdateAlias outlasts its lock; run B (same holder) takes it
        seen["a"] = repo.find_claim(LOCK, TARGET)
        sim_clock.advance(ttl.total_seconds() + 10)
        seen["b"] = engine.remediation.store.take_lock(TARGET, seen["a"]["holder"], ttl)  # what run B's run() does

    lam = clients.client("lambda")
    lam.meta.events.register("before-call.lambda.UpdateAlias", slow_update)
    try:
        failing_verdict(engine, d1)  # canary-issue: run A, an automatic rollback
    finally:
        lam.meta.events.unregister("before-call.lambda.UpdateAlias", slow_update)

    [incident] = engine.incident_store.open_incidents()
    assert seen["a"]["holder"] == f"{incident.incident_id}#rollback", "the lock names the incident and action"
    assert seen["b"] is not None and alias() == (v1, {}), "run B took the lock; run A's rollback went through"
    lock = repo.find_claim(LOCK, TARGET)
    assert lock is not None and lock["lock_token"] == seen["b"], "run B's lock stands after run A's release"
    assert engine.remediation.store.take_lock(TARGET, "inc-other#rollback", ttl) is None, "no third run meanwhile"
    assert seen["a"]["lock_token"] != seen["b"], "each claim its own token"
    assert engine.remediation.store.release_lock(TARGET, seen["b"]) and repo.find_claim(LOCK, TARGET) is None


def test_a_run_releases_its_own_lock(repo: Any, publisher: Any, sim_clock: Any) -> None:
    v1, v2 = make_function("checkout-api")
    d1 = deployment(repo, "dg-1", v1, v2)
    engine = per_deployment_engine(repo, publisher)

    failing_verdict(engine, d1)

    assert alias() == (v1, {})
    assert repo.find_claim(LOCK, TARGET) is None, "released at once, not left to expire"
