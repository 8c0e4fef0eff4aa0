from __future__ import annotations

from typing import Any

import pytest

from deployguard.aws.lambda_traffic import LambdaTrafficShifter
from deployguard.exceptions import TrafficShiftError
from deployguard.models import LambdaTarget
from deployguard_local.emulator import sample_handler


def test_shift_promote_and_rollback_move_the_alias(embedded: Any) -> None:
    versions = embedded.deploy_sample_function("orders", "live", sample_handler)
    shifter = LambdaTrafficShifter(
        LambdaTarget(function_name="orders", alias="live", stable_version=versions[0], new_version=versions[1])
    )
    shifter.shift(0.25)
    state = shifter.current()
    assert state.function_version == versions[0]
    assert state.additional_weights == {versions[1]: 0.25}
    assert state.weight_of(versions[0]) == pytest.approx(0.75)
    shifter.rollback()
    assert shifter.current().weight_of(versions[0]) == 1.0
    shifter.promote()
    assert shifter.current().weight_of(versions[1]) == 1.0


def test_bad_weight_and_missing_function_are_clear_errors(embedded: Any) -> None:
    shifter = LambdaTrafficShifter(
        LambdaTarget(function_name="nope", alias="live", stable_version="1", new_version="2")
    )
    with pytest.raises(TrafficShiftError, match="between 0 and 1"):
        shifter.shift(1.5)
    with pytest.raises(TrafficShiftError, match="nope:live"):
        shifter.shift(0.1)
