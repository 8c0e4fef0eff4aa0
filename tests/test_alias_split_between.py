"""One predicate for "the alias is split between the canary's two versions" (:meth:`AliasState.split_between`):
Promote's read-back (``CanaryWorkflow._confirm_promoted``) and the reconciler's promoted check both ask it."""

from __future__ import annotations

import pytest

from deployguard.aws.lambda_traffic import AliasState
from deployguard.models import LambdaTarget

TARGET = LambdaTarget(function_name="checkout-api", alias="live", stable_version="1", new_version="2")


@pytest.mark.parametrize(
    ("alias", "split"),
    [
        (AliasState("1", {"2": 0.25}), True),  # a late shift landed after the promotion
        (AliasState("2", {"1": 0.1}), True),  # mostly new, some stable
        (AliasState("2", {}), False),  # promoted: wholly new
        (AliasState("1", {}), False),  # wholly stable (an emergency rollback's)
        (AliasState("1", {"2": 0.0}), False),  # a zero weight is no split
        (AliasState("3", {}), False),  # a later release's alias
        (AliasState("1", {"3": 0.2}), False),  # a version this deployment never shipped
        (AliasState("3", {"2": 0.5}), False),
    ],
)
def test_split_between_the_two_versions_only(alias: AliasState, split: bool) -> None:
    assert alias.split_between(TARGET) is split
