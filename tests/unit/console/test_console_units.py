"""Who may do what (the caller from API Gateway's authoriser), and how people's requests steer a canary."""

from __future__ import annotations

import pytest

from deployguard.exceptions import ForbiddenError, NotAuthorizedError
from deployguard.models import CanaryControl, Decision
from deployguard.workflows.console import caller_of, writer
from deployguard.workflows.control import effective_decision, steer

WRITE = "deployguard/write"


def test_an_iam_caller_is_its_arn_and_may_write_where_the_gateway_let_it() -> None:
    caller = caller_of({"iam": {"userArn": "arn:aws:iam::123456789012:user/alice", "accessKey": "AKIA"}}, WRITE)
    # whether it may write is its IAM policies' business (API Gateway checks each route): unknown, not promised
    assert (caller.identity, caller.kind, caller.can_write) == ("arn:aws:iam::123456789012:user/alice", "iam", None)
    assert writer(caller) == "arn:aws:iam::123456789012:user/alice"  # at a write route, the gateway let it through


@pytest.mark.parametrize(
    ("claims", "identity", "can_write"),
    [
        ({"sub": "u-1", "username": "bob", "scope": "deployguard/read deployguard/write"}, "u-1 (bob)", True),
        ({"sub": "u-2", "email": "carol@example.com", "scope": "deployguard/read"}, "u-2 (carol@example.com)", False),
        ({"sub": "u-3", "scp": ["deployguard/write"]}, "u-3", True),
        # the issuer and subject are who the token vouches for; a name or email any issuer's user may claim
        (
            {"iss": "https://idp.example", "sub": "u-4", "email": "dave@example.com", "scope": "deployguard/write"},
            "https://idp.example#u-4 (dave@example.com)",
            True,
        ),
    ],
)
def test_a_jwt_caller_needs_the_write_scope_to_write(claims: dict[str, object], identity: str, can_write: bool) -> None:
    caller = caller_of({"jwt": {"claims": claims}}, WRITE)
    assert (caller.identity, caller.kind, caller.can_write) == (identity, "jwt", can_write)
    if not can_write:
        with pytest.raises(ForbiddenError, match="may read but not write"):
            writer(caller)


@pytest.mark.parametrize(
    "authorizer",
    [None, {}, {"jwt": {"claims": {}}}, {"jwt": {"claims": {"email": "a@b.c"}}}, {"iam": {}}, {"lambda": {"x": 1}}],
)
def test_no_identity_no_service(authorizer: dict[str, object] | None) -> None:
    with pytest.raises(NotAuthorizedError):
        caller_of(authorizer, WRITE)


@pytest.mark.parametrize(
    ("control", "proposed", "decision", "approval", "expected"),
    [
        (CanaryControl(paused=True), "advance", Decision.HEALTHY, False, "wait"),
        (CanaryControl(paused=True), "hold", Decision.INCONCLUSIVE, False, "wait"),
        (CanaryControl(paused=True), "rollback", Decision.FAILING, False, "rollback"),
        (CanaryControl(promote_requested=True), "wait", Decision.INCONCLUSIVE, False, "promote"),
        # approval before 100%: a promote request skips the steps, never the approval
        (CanaryControl(promote_requested=True), "wait", Decision.INCONCLUSIVE, True, "await_approval"),
        (CanaryControl(promote_requested=True), "rollback", Decision.FAILING, False, "rollback"),
        (CanaryControl(), "promote", Decision.HEALTHY, True, "await_approval"),
        (CanaryControl(), "advance", Decision.HEALTHY, True, "advance"),
    ],
)
def test_people_steer_but_a_failing_verdict_wins(
    control: CanaryControl, proposed: str, decision: Decision, approval: bool, expected: str
) -> None:
    assert steer(control, proposed, decision, approval) == expected


def test_skipped_analysis_acts_as_healthy_only_when_skipped() -> None:
    assert effective_decision(CanaryControl(skip_analysis=True), Decision.FAILING) == Decision.HEALTHY
    assert effective_decision(CanaryControl(), Decision.FAILING) == Decision.FAILING


def test_a_jwt_identity_fits_the_audit_trails_actor() -> None:
    """At most 200 characters (ControlRequest.actor): the name is shortened first, a huge issuer and subject
    digested, never cut (two callers must not end up with one identity)."""
    from deployguard.workflows.console import MAX_IDENTITY, jwt_identity

    long_name = jwt_identity("https://idp.example", "u-1", "n" * 500)
    assert len(long_name) <= MAX_IDENTITY and long_name.startswith("https://idp.example#u-1 (nnn")
    huge = [jwt_identity("https://" + "i" * 300, sub, "bob") for sub in ("a", "b")]
    assert all(len(h) <= MAX_IDENTITY for h in huge) and huge[0] != huge[1]
