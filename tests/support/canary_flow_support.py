"""The canary state machine on the embedded AWS driven the way a person meets it: a sample function with two
versions and traffic, the canary run in the background, control verbs asked meanwhile (the approval and the
flag-verb tests share these)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from control_support import control_service

from deployguard.models import Deployment, LambdaTarget
from deployguard.workflows.control import ControlOutcome, ControlRequest
from deployguard_local.emulator import sample_handler
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "deployguard.yaml"
DEP = "dep-checkout-api"


def config_with_approval(tmp_path: Path, approval: bool) -> Path:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config["services"]["checkout-api"]["approval_before_full_traffic"] = approval
    path = tmp_path / "deployguard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def ask(aws: Any, verb: str, by: str = "alice") -> ControlOutcome:
    return control_service(aws).apply(DEP, ControlRequest(verb=verb, actor=by, reason=f"{verb} from the test"))  # type: ignore[arg-type]


def prepare(aws: Any, regress_at: int | None = None) -> tuple[dict[str, Any], LambdaTarget]:
    versions = aws.deploy_sample_function("checkout-api", "live", sample_handler)
    target = LambdaTarget(function_name="checkout-api", alias="live", stable_version=versions[0],
                          new_version=versions[1])  # fmt: skip
    bad = VersionBehaviour(regress_at=regress_at, regressed_error_rate=0.10, regressed_p99_ms=2000)
    behaviours = {versions[0]: VersionBehaviour(), versions[1]: bad if regress_at is not None else VersionBehaviour()}
    aws.clock.listeners.append(LambdaTrafficSource("checkout-api", "live", 2000, behaviours, seed=5).on_clock)
    request = {"deployment": {"deployment_id": DEP, "service": "checkout-api", "version": versions[1],
                              "target": target.model_dump()}}  # fmt: skip
    return request, target


def in_background(aws: Any, request: dict[str, Any]) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        result.update(aws.run_state_machine("CanaryStateMachine", request, timeout=180))
        aws.invoker.drain()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    return worker, result


def until(check: Callable[[], Deployment | bool | None], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("never happened")
