"""CodeDeploy lifecycle hooks and the deployment recorder on the embedded AWS.

Every path ends with exactly one status call CodeDeploy accepted (or, when CodeDeploy
itself refuses, one attempt and the refusal recorded) and a complete record."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from deployguard.aws.events import EventPublisher
from deployguard.config import parse_config
from deployguard.exceptions import ConfigError
from deployguard.hooks.lifecycle import LifecycleHook
from deployguard.models import DeploymentStatus, LambdaTarget
from deployguard.storage.repository import DeploymentRepository
from deployguard.workflows.recorder import DeploymentRecorder, StateChangeDetail
from deployguard_local.chaos.faults import never_answering_server
from deployguard_local.codedeploy import LEDGER, create_lambda_deployment, simulate_embedded_rollout
from deployguard_local.emulator import sample_handler
from deployguard_local.traffic import LambdaTrafficSource, VersionBehaviour


def _deploy(embedded: Any, name: str, handler: Any = sample_handler) -> tuple[str, LambdaTarget]:
    versions = embedded.deploy_sample_function(name, "live", handler)
    target = LambdaTarget(function_name=name, alias="live", stable_version=versions[0], new_version=versions[1])
    return create_lambda_deployment(target, name, "live"), target


def _hook(config_text: str = "{}") -> LifecycleHook:
    config = parse_config(config_text, "test.yaml")
    return LifecycleHook(config, DeploymentRepository(), EventPublisher(), local_mode=True, sleep=lambda s: None)


def _verdicts(deployment_id: str) -> list[Any]:
    return [e for e in DeploymentRepository().audit_trail(deployment_id) if e.action == "hook_verdict"]


def test_pre_traffic_checks_pass_and_are_answered_once(embedded: Any) -> None:
    deployment_id, _ = _deploy(embedded, "orders")
    execution = LEDGER.issue(deployment_id)
    outcome = _hook().handle(
        {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution}, lambda: 60_000
    )
    assert (outcome.phase, outcome.status, outcome.reported) == ("pre_traffic", "Succeeded", True)
    assert LEDGER.calls_for(execution) == 1
    record = DeploymentRepository().get_deployment(deployment_id)
    assert record.driver == "codedeploy" and record.codedeploy_application == "orders"
    assert [v.reason for v in _verdicts(deployment_id)] == ["Succeeded: pre-traffic: 2 passed, 0 failed, 0 warned"]


def test_duplicate_delivery_runs_nothing_twice(embedded: Any) -> None:
    deployment_id, _ = _deploy(embedded, "dup")
    event = {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": LEDGER.issue(deployment_id)}
    first = embedded.invoke("LifecycleHookFunction", event)[0]
    second = embedded.invoke("LifecycleHookFunction", event)[0]
    assert first["reported"] and not first["duplicate"]
    assert second["duplicate"] and not second["reported"] and second["checks"] == []
    assert LEDGER.calls_for(event["LifecycleEventHookExecutionId"]) == 1
    assert len(_verdicts(deployment_id)) == 1


class _SlowHealth(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None


@pytest.fixture
def health_server() -> Iterator[str]:
    server = _QuietServer(("127.0.0.1", 0), _SlowHealth)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _http_config(url: str, **extra: Any) -> str:
    options = ", ".join(f"{k}: {v}" for k, v in extra.items())
    return (
        "defaults:\n  hooks:\n    report_margin_seconds: 1\n    pre_traffic:\n"
        f"      - {{name: health, type: http, url: '{url}', expect_fields: {{status: ok}}, "
        f"allowed_hosts: [127.0.0.1], {options}}}\n"
    )


def test_http_health_check_against_a_real_server(embedded: Any, health_server: str) -> None:
    deployment_id, _ = _deploy(embedded, "web")
    execution = LEDGER.issue(deployment_id)
    hook = _hook(_http_config(f"{health_server}/health", timeout_seconds=2, retries=0, max_response_ms=1000))
    outcome = hook.handle({"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution}, lambda: 30_000)
    assert outcome.status == "Succeeded", outcome.reason
    assert outcome.checks[0].message.startswith("healthy in")


def test_a_check_that_hangs_is_cut_at_its_deadline(embedded: Any) -> None:
    deployment_id, _ = _deploy(embedded, "hangs")
    execution = LEDGER.issue(deployment_id)
    with never_answering_server("/hang") as url:
        hook = _hook(_http_config(url, timeout_seconds=30, retries=3))
        # the function has 2.5 s left; 1 s is kept to answer CodeDeploy; the server never answers
        outcome = hook.handle(
            {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution}, lambda: 2_500
        )
    assert outcome.status == "Failed" and "health" in outcome.reason
    assert outcome.checks[0].attempts <= 2 and "no time left before the hook must answer" in outcome.reason
    assert LEDGER.calls_for(execution) == 1 and LEDGER.status_of(execution) == "Failed"
    assert len(_verdicts(deployment_id)) == 1


def test_an_internal_error_fails_closed_with_the_reason(embedded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import deployguard.analysis.judge as judge  # the hook imports it after traffic moved

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("judge exploded")

    deployment_id, target = _deploy(embedded, "internal")
    from deployguard.aws.lambda_traffic import LambdaTrafficShifter

    LambdaTrafficShifter(target).promote()  # traffic has moved: AfterAllowTraffic
    monkeypatch.setattr(judge, "judge_canary", broken)
    execution = LEDGER.issue(deployment_id)
    outcome = _hook().handle(
        {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution}, lambda: 60_000
    )
    assert outcome.status == "Failed" and "judge exploded" in outcome.reason
    assert LEDGER.calls_for(execution) == 1
    assert "judge exploded" in _verdicts(deployment_id)[0].reason


def test_codedeploy_answering_with_an_error_is_recorded_not_retried_forever(embedded: Any) -> None:
    deployment_id, _ = _deploy(embedded, "refused")
    execution = LEDGER.issue(deployment_id)
    LEDGER.refuse_next.append("DeploymentDoesNotExistException")
    outcome = _hook().handle(
        {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution}, lambda: 60_000
    )
    assert not outcome.reported and "DeploymentDoesNotExistException" in (outcome.report_error or "")
    assert LEDGER.calls_for(execution) == 0
    verdict = _verdicts(deployment_id)[0]
    assert verdict.details["report_error"] and verdict.details["reported"] is False
    # a redelivery of the same execution does not answer a second time
    again = _hook().handle({"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution}, lambda: 60_000)
    assert again.duplicate


def test_throttled_status_call_is_retried_and_lands_once(embedded: Any) -> None:
    deployment_id, _ = _deploy(embedded, "throttled")
    execution = LEDGER.issue(deployment_id)
    LEDGER.refuse_next.append("ThrottlingException")
    outcome = _hook().handle(
        {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution}, lambda: 60_000
    )
    assert outcome.reported and LEDGER.calls_for(execution) == 1


def test_malformed_events_name_the_field(embedded: Any) -> None:
    deployment_id, _ = _deploy(embedded, "malformed")
    execution = LEDGER.issue(deployment_id)
    payload, errored = embedded.invoke(
        "LifecycleHookFunction",
        {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution, "Surprise": 1},
    )
    assert not errored and payload["status"] == "Failed" and "Surprise" in payload["reason"]
    assert LEDGER.calls_for(execution) == 1
    assert _verdicts(deployment_id)[0].reason.startswith("Failed: malformed lifecycle hook event: field Surprise")
    # no DeploymentId: the execution id alone is enough to answer Failed
    lone = LEDGER.issue(deployment_id)
    payload, errored = embedded.invoke("LifecycleHookFunction", {"LifecycleEventHookExecutionId": lone})
    assert not errored and payload["status"] == "Failed" and "DeploymentId" in payload["reason"]
    assert payload["reported"] and LEDGER.calls_for(lone) == 1
    # nothing to answer with at all: logged, no call
    payload, errored = embedded.invoke("LifecycleHookFunction", ["not", "an", "object"])
    assert not errored and payload["status"] is None and payload["reported"] is False


def test_a_failing_smoke_test_fails_the_deployment_and_keeps_the_alias(embedded: Any) -> None:
    def broken_release(event: Any, context: Any) -> dict[str, Any]:
        return {"statusCode": 500, "body": "boom"}

    versions = embedded.deploy_sample_function("broken", "live", broken_release)
    target = LambdaTarget(function_name="broken", alias="live", stable_version=versions[0], new_version=versions[1])
    result = simulate_embedded_rollout(embedded, target, application="broken")
    assert result.final_state == "FAILURE" and result.hooks == [("BeforeAllowTraffic", "Failed")]
    assert result.alias_version == versions[0]
    record = DeploymentRepository().get_deployment(result.deployment_id)
    assert record.status == DeploymentStatus.FAILED
    assert [p.phase for p in record.phase_history][-1] == "failed"


def test_codedeploy_canary_with_a_regression_is_failed_after_traffic_and_rolled_back(embedded: Any) -> None:
    versions = embedded.deploy_sample_function("pay", "live", sample_handler)
    target = LambdaTarget(function_name="pay", alias="live", stable_version=versions[0], new_version=versions[1])
    behaviours = {
        versions[0]: VersionBehaviour(),
        versions[1]: VersionBehaviour(regress_at=0, regressed_error_rate=0.1),
    }
    traffic = LambdaTrafficSource("pay", "live", 3000, behaviours, seed=4)
    embedded.clock.listeners.append(traffic.on_clock)
    # without the scheduled assessor (which would stop it at 10%: test_codedeploy_canary_phase.py)
    # the AfterAllowTraffic hook is what catches it
    result = simulate_embedded_rollout(embedded, target, application="pay", assessor_schedule=False)
    assert embedded.schedule_runs == [] and result.stop_calls == []
    assert result.hooks == [("BeforeAllowTraffic", "Succeeded"), ("AfterAllowTraffic", "Failed")]
    assert result.alias_version == versions[0]
    record = DeploymentRepository().get_deployment(result.deployment_id)
    assert record.status == DeploymentStatus.ROLLED_BACK
    assert record.ended_at is not None and record.duration_seconds is not None


def test_healthy_codedeploy_canary_succeeds(embedded: Any) -> None:
    versions = embedded.deploy_sample_function("fine", "live", sample_handler)
    target = LambdaTarget(function_name="fine", alias="live", stable_version=versions[0], new_version=versions[1])
    traffic = LambdaTrafficSource("fine", "live", 3000, {v: VersionBehaviour() for v in versions}, seed=5)
    embedded.clock.listeners.append(traffic.on_clock)
    result = simulate_embedded_rollout(embedded, target, application="fine")
    assert result.final_state == "SUCCESS", result.hooks
    assert result.alias_version == versions[1]
    assert DeploymentRepository().get_deployment(result.deployment_id).status == DeploymentStatus.SUCCEEDED


def test_recorder_ignores_duplicates_and_late_events(embedded: Any) -> None:
    deployment_id, _ = _deploy(embedded, "recorded")
    recorder = DeploymentRecorder(parse_config("{}", "t.yaml"), DeploymentRepository(), EventPublisher())
    detail = {"deploymentId": deployment_id, "application": "recorded", "deploymentGroup": "live"}
    start = StateChangeDetail.model_validate({**detail, "state": "START"})
    success = StateChangeDetail.model_validate({**detail, "state": "SUCCESS"})
    assert recorder.record(start, embedded.clock()).changed
    assert not recorder.record(start, embedded.clock()).changed  # EventBridge delivered it twice
    embedded.clock.advance(300)
    assert recorder.record(success, embedded.clock()).status == DeploymentStatus.SUCCEEDED
    late = recorder.record(start, embedded.clock())  # out of order
    assert late.status == DeploymentStatus.SUCCEEDED and not late.changed
    record = DeploymentRepository().get_deployment(deployment_id)
    assert record.duration_seconds == 300
    actions = [e.action for e in DeploymentRepository().audit_trail(deployment_id)]
    assert [a for a in actions if a.startswith("codedeploy_")] == ["codedeploy_start", "codedeploy_success"]


def test_a_validation_longer_than_the_hook_limit_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(
            "defaults:\n  hooks:\n    pre_traffic:\n"
            "      - {name: slow, type: tcp, host: db, port: 5432, timeout_seconds: 600, retries: 10}\n",
            "conf.yaml",
        )
    assert err.value.field == "defaults.hooks.pre_traffic" and "one-hour" in str(err.value)


def test_a_configuration_that_cannot_load_still_answers_failed(embedded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook function cannot be built (its configuration is unreadable): CodeDeploy still gets Failed, once."""
    deployment_id, _ = _deploy(embedded, "unconfigured")
    execution = LEDGER.issue(deployment_id)
    monkeypatch.setenv("DEPLOYGUARD_CONFIG_FILE", "/nonexistent/deployguard.yaml")
    from deployguard.workflows import runtime

    runtime.reset()
    payload, errored = embedded.invoke(
        "LifecycleHookFunction", {"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution}
    )
    assert not errored, payload
    assert payload["status"] == "Failed" and payload["reported"] and "failing closed" in payload["reason"]
    assert LEDGER.calls_for(execution) == 1 and LEDGER.status_of(execution) == "Failed"
