"""`deployguard control` with an option outside the request's bounds (an empty --by, a --reason over 1000
characters) on the embedded AWS: one line naming the option, exit 2, nothing done; not pydantic's report."""

from __future__ import annotations

from typing import Any

import pytest
from control_support import canary_in_flight, promoted

from deployguard.storage.repository import DeploymentRepository
from deployguard_local.cli import main


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--by", "", "--reason", "x"], "invalid option: field --by: String should have at least 1 character"),
        (["--by", "erin", "--reason", "x" * 1001], "invalid option: field --reason: String should have at most 1000"),
    ],
)
def test_a_bad_option_is_named(
    embedded: Any, capsys: pytest.CaptureFixture[str], options: list[str], said: str
) -> None:
    canary_in_flight(embedded, "checkout-api")
    capsys.readouterr()
    code = main(["control", "pause", "dep-checkout-api", *options])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith(f"deployguard control pause: {said}"), err
    assert "validation error" not in err and "pydantic" not in err and len(err.splitlines()) == 1
    assert not DeploymentRepository().get_deployment("dep-checkout-api").control.paused


def test_an_empty_by_on_an_emergency_rollback_is_named(embedded: Any, capsys: pytest.CaptureFixture[str]) -> None:
    promoted(embedded, "payments-api")
    code = main(["control", "rollback", "payments-api", "--by", "", "--reason", "x", "--confirm", "payments-api",
                 "--from-version", "2"])  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 2 and "field --by: String should have at least 1 character" in err, err
    assert DeploymentRepository().get_deployment("dep-payments-api").decision == "promoted"
