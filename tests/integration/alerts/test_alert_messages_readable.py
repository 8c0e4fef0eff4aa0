"""An alert's message says which condition fired and reads like people write it: rates in percent
(``error_rate=7.95% vs baseline 0.61%``, not 0.07948), each reading beside its baseline. What reaches
the channels: the canary state machine on the embedded AWS, the alert engine, the signed webhook on
127.0.0.1."""

from __future__ import annotations

import re

from alert_rules_support import ShopBehaviour, run_canary, shop_stack, webhook_events

from deployguard_local.traffic import VersionBehaviour


def test_high_error_rate_message_names_the_condition_and_the_baseline_in_percent() -> None:
    with shop_stack(["pay-api"]) as (aws, receivers):
        regressing = VersionBehaviour(regress_at=0, regressed_error_rate=0.08, regressed_p99_ms=2000)
        run_canary(aws, "pay-api", regressing, ShopBehaviour())
        messages = {
            e["details"]["rule"]: e["message"] for e in webhook_events(receivers)
            if (e.get("details") or {}).get("kind") == "alert" and e["deployment_id"] == "dep-pay-api"
        }  # fmt: skip

        error = messages["high-error-rate"]
        assert error.startswith("more than 5% of requests fail: error_rate > 5% (error_rate=")
        match = re.search(r"error_rate=(\d+(?:\.\d+)?)% vs baseline (\d+(?:\.\d+)?)%\)", error)
        assert match is not None, error
        assert 5.0 < float(match.group(1)) < 15.0 and float(match.group(2)) < 2.0

        slow = messages["performance-degradation"]
        assert ": response_time_p99 increase > 50% vs baseline" in slow  # the branch that fired, not throughput's
        assert "throughput decrease" not in slow.split("(")[0]
        assert re.search(r"response_time_p99=\d+(?:\.\d+)? ms vs baseline \d+(?:\.\d+)? ms\)", slow), slow
