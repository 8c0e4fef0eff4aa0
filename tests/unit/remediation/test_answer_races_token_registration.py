"""A person's answer that lands while the approval's state machine registers its task token (the request changed
since the answer read it, still pending) is answered anew, not refused: before, the console answered 409/500
"approval ... changed since it was read" to a person who answered quickly. Real alert engine and executor on moto;
the registration is made to land between the answer's read and its write with a botocore hook."""

from __future__ import annotations

from typing import Any

from grouped_support import deployment
from remediation_support import make_function
from test_approved_actions_guarded import _ask_rollback, _engine

from deployguard.aws import clients
from deployguard.remediation.models import ApprovalStatus


def test_an_answer_racing_the_token_registration_is_kept(repo: Any, publisher: Any, sim_clock: Any) -> None:
    v1, v2 = make_function("checkout-api")
    engine = _engine(repo, publisher)
    approval = _ask_rollback(engine, deployment(repo, "dg-1", v1, v2))
    raced: list[str] = []

    def register_first(params: Any, **_: Any) -> None:  # the answer's write of "approved": the token lands first
        if not raced and params.get("Item", {}).get("status") == "approved":
            raced.append("registered")
            engine.remediation.register_task_token(approval.approval_id, "token-of-the-wait")

    events = clients.resource("dynamodb").meta.client.meta.events
    events.register("before-parameter-build.dynamodb.PutItem", register_first, unique_id="token-race")
    try:
        answered = engine.decide(approval.approval_id, "bob", approve=True, notes="roll it back")
    finally:
        events.unregister("before-parameter-build.dynamodb.PutItem", unique_id="token-race")
    assert raced == ["registered"]
    assert answered.status == ApprovalStatus.APPROVED and answered.decided_by == "bob"
    stored = engine.remediation.store.approval(approval.approval_id)
    assert stored.status == ApprovalStatus.APPROVED and stored.decided_by == "bob"
