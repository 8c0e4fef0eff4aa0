"""`deployguard demo`: canary rollouts end to end on the embedded AWS.

Two rollouts of sample Lambda functions run through the real canary state machine
(moto's ASL interpreter, real handlers, simulated clock): one healthy release that
is promoted, and one that regresses midway and is rolled back. A third is a CodeDeploy
``Canary10Percent5Minutes`` deployment guarded by the lifecycle hooks and the scheduled
assessor, which stops it (with rollback) during its 10% phase. ``--scenario FILE``
replays a recorded scenario (deployguard-scenario/1) through the same system.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from deployguard.models import Deployment
from deployguard.readmodels import DeploymentReader, timeline
from deployguard.reporting.writer import report_key
from deployguard.storage.repository import DeploymentRepository
from deployguard_local import local_state
from deployguard_local.emulator import REPO_ROOT, EmbeddedAws, _environment, sample_handler
from deployguard_local.receivers import local_receivers
from deployguard_local.traffic import LambdaTrafficSource, ScenarioTrafficSource, VersionBehaviour

DEMO_CONFIG = local_state.DEMO_CONFIG  # examples/demo.yaml


@dataclass
class RolloutResult:
    name: str
    deployment: Deployment | None
    execution_status: str
    assessments: int
    events_published: int
    deliveries: int
    wall_seconds: float

    @property
    def decision(self) -> str:
        return (self.deployment.decision if self.deployment else None) or self.execution_status.lower()

    @property
    def simulated_seconds(self) -> float | None:
        return self.deployment.duration_seconds if self.deployment else None


class StoryPrinter:
    """Prints what happened to a deployment in simulated-time order, from its read model (the timeline
    ``deployguard deployments show`` prints, :func:`deployguard.readmodels.timeline`): traffic steps,
    every verdict with its reasons, checks, alerts, incidents, remediation, and each event with the
    channels the router delivered it to.

    The notification router runs asynchronously (as SNS invokes it), so deliveries are read only
    after the invocations have drained; :meth:`flush` prints what is new since the last flush,
    oldest first, so the story is strictly chronological whatever order things arrived in.
    """

    def __init__(self, repository: DeploymentRepository, out: TextIO) -> None:
        self.reader = DeploymentReader(repository)
        self.out = out
        self.printed: set[tuple[str, str, str]] = set()

    def flush(self, deployment_id: str) -> None:
        if self.reader.repository.find_deployment(deployment_id) is None:
            return
        history = self.reader.history(deployment_id)
        reached: dict[str, list[str]] = {}
        for n in history.notifications:
            reached.setdefault(n.event_id, []).append(n.channel + ("" if n.status.value == "delivered"
                                                                   else f" ({n.status.value})"))  # fmt: skip
        channels = {(e.at, f"{e.event_type.value}: {e.title}"): reached.get(e.event_id, []) for e in history.events}
        for item in timeline(history, notifications=False):
            key = (item.at.isoformat(), item.kind, item.title)
            if key in self.printed:
                continue
            self.printed.add(key)
            line = f"  {item.at:%H:%M:%S}  {item.kind:<10} {item.title}"
            if item.kind == "event" and channels.get((item.at, item.title)):
                line += f" -> {', '.join(sorted(channels[(item.at, item.title)]))}"
            elif item.detail and item.kind != "event":
                line += f"  ({item.detail})"
            self.out.write(line + "\n")
        self.out.flush()


def _count_published(deployment_id: str) -> int:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sns.models import sns_backends

    count = 0
    for topic in sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].topics.values():
        for notification in topic.sent_notifications:
            message = notification[1]
            if deployment_id in message:
                count += 1
    return count


def run_rollout(
    aws: EmbeddedAws,
    name: str,
    function_name: str,
    traffic: LambdaTrafficSource | ScenarioTrafficSource,
    versions: list[str],
    out: TextIO,
    about: str = "",
) -> RolloutResult:
    repository = DeploymentRepository()
    deployment_id = f"demo-{name}"
    out.write(f"\n== {name}: {function_name} version {versions[0]} -> {versions[1]}\n")
    _explain(about, out)
    assert aws.clock is not None
    aws.clock.listeners.append(traffic.on_clock)
    result: dict[str, Any] = {}
    started = time.perf_counter()

    def run() -> None:
        result["execution"] = aws.run_state_machine(
            "CanaryStateMachine",
            {
                "deployment": {
                    "deployment_id": deployment_id,
                    "service": function_name,
                    "version": versions[1],
                    "target": {
                        "function_name": function_name,
                        "alias": "live",
                        "stable_version": versions[0],
                        "new_version": versions[1],
                    },
                }
            },
        )

    run()
    aws.invoker.drain()  # the notification router runs asynchronously, as SNS invokes it
    StoryPrinter(repository, out).flush(deployment_id)
    traffic.active = False
    aws.clock.listeners.remove(traffic.on_clock)
    deployment = repository.find_deployment(deployment_id)
    execution = result.get("execution", {})
    status = execution.get("status", "UNKNOWN")
    if deployment is not None:
        out.write(f"  => {deployment.decision}: {deployment.decision_reason}\n")
    else:
        out.write(f"  => execution {status}: {execution.get('error', '')} {execution.get('cause', '')}\n")
    return RolloutResult(
        name=name,
        deployment=deployment,
        execution_status=status,
        assessments=len(repository.assessments(deployment_id)) if deployment else 0,
        events_published=_count_published(deployment_id),
        deliveries=len(repository.notifications(deployment_id)) if deployment else 0,
        wall_seconds=time.perf_counter() - started,
    )


def _explain(about: str, out: TextIO) -> None:
    """A rollout's short introduction: what happens and what to watch for."""
    for line in textwrap.wrap(about, width=96):
        out.write(f"   {line}\n")
    if about:
        out.write("\n")


def print_summary(results: list[RolloutResult], out: TextIO) -> None:
    header = (
        f"{'rollout':<22} {'decision':<12} {'time to decision':>17} {'assessments':>12} {'events':>7} "
        f"{'deliveries':>11} {'wall':>7}"
    )
    out.write("\n" + header + "\n" + "-" * len(header) + "\n")
    for r in results:
        sim = r.simulated_seconds
        took = f"{sim / 60:.0f} min (sim)" if sim is not None else "-"
        out.write(
            f"{r.name:<22} {r.decision:<12} {took:>17} {r.assessments:>12} {r.events_published:>7} "
            f"{r.deliveries:>11} {r.wall_seconds:>6.1f}s\n"
        )


def builtin_demo(aws: EmbeddedAws, out: TextIO) -> list[RolloutResult]:
    assert aws.clock is not None
    healthy_versions = aws.deploy_sample_function("checkout-api", "live", sample_handler)
    healthy = LambdaTrafficSource(
        "checkout-api", "live", 2000, {v: VersionBehaviour() for v in healthy_versions}, seed=11
    )
    results = [
        run_rollout(
            aws, "healthy-release", "checkout-api", healthy, healthy_versions, out,
            about="The state machine moves 10%, 25%, then 50% of traffic to the new version; every minute the judge "
            "compares it with the stable version in the same minutes. Nothing is worse, so each step advances after "
            "its bake time and the release is promoted.",
        )
    ]  # fmt: skip
    bad_versions = aws.deploy_sample_function("payments-api", "live", sample_handler)
    regressing = LambdaTrafficSource(
        "payments-api",
        "live",
        2000,
        {bad_versions[0]: VersionBehaviour(), bad_versions[1]: VersionBehaviour(regress_at=5)},
        seed=12,
    )
    results.append(
        run_rollout(
            aws, "regression-midway", "payments-api", regressing, bad_versions, out,
            about="The same canary, but the new version starts failing 8% of its requests at minute 5. The judge's "
            "failing verdict raises the canary-issue alert; its automatic remediation puts the alias back at 100% of "
            "the stable version; incidents open, and since the release is rolled back their escalation stops paging "
            "(PagerDuty stays resolved) until a person acknowledges and resolves them.",
        )
    )  # fmt: skip
    regression = results[-1].deployment
    if regression is not None:  # its incidents are followed up before the next rollout opens its own
        incident_followup(aws, regression.deployment_id, out)
    results.append(codedeploy_rollout(aws, out))
    results.append(ecs_rollout(aws, out))
    return results


def codedeploy_rollout(aws: EmbeddedAws, out: TextIO) -> RolloutResult:
    """A CodeDeploy Canary10Percent5Minutes deployment guarded by DeployGuard's hooks and the
    scheduled assessor (its EventBridge schedule fires every simulated minute); it regresses at
    10%, the assessor's failing verdict stops it with rollback before traffic goes to 100%."""
    from deployguard.models import LambdaTarget
    from deployguard_local.codedeploy import simulate_embedded_rollout

    assert aws.clock is not None
    versions = aws.deploy_sample_function("search-api", "live", sample_handler)
    out.write(f"\n== codedeploy-canary: search-api version {versions[0]} -> {versions[1]} (Canary10Percent5Minutes)\n")
    _explain(
        "CodeDeploy moves the traffic and calls DeployGuard's lifecycle hooks; the scheduled assessor judges the 10% "
        "phase every minute. The new version is slow and failing from its second minute, so the assessor stops the "
        "deployment with rollback before it reaches 100%.",
        out,
    )
    target = LambdaTarget(function_name="search-api", alias="live", stable_version=versions[0], new_version=versions[1])
    behaviours = {versions[0]: VersionBehaviour(), versions[1]: VersionBehaviour(regress_at=1, regressed_p99_ms=1600)}
    traffic = LambdaTrafficSource("search-api", "live", 3000, behaviours, seed=13)
    aws.clock.listeners.append(traffic.on_clock)
    started = time.perf_counter()
    sim_clock = aws.clock

    def step(line: str) -> None:
        out.write(f"  {sim_clock():%H:%M:%S}  {line}\n")

    result = simulate_embedded_rollout(aws, target, application="search-api", on_step=step)
    aws.clock.listeners.remove(traffic.on_clock)
    aws.invoker.drain()
    where = f"alias {target.function_name}:{target.alias} on version {result.alias_version}"
    return _codedeploy_outcome("codedeploy-canary", result.deployment_id, result.final_state, where, started, out)


def ecs_rollout(aws: EmbeddedAws, out: TextIO) -> RolloutResult:
    """A CodeDeploy ECSCanary10Percent5Minutes blue/green deployment of an ECS service behind a
    load balancer; the green task set answers 5xx, the assessor compares the target groups every
    minute, and its failing verdict stops the deployment: production goes back to blue."""
    from deployguard_local.ecs import AlbTrafficSource, create_ecs_service, simulate_ecs_rollout

    assert aws.clock is not None
    stack = create_ecs_service("shop", "checkout-web")
    out.write(f"\n== ecs-blue-green: {stack.cluster}/{stack.service} task definition :1 -> :2 "
              "(ECSCanary10Percent5Minutes)\n")  # fmt: skip
    _explain(
        "An ECS service behind a load balancer, deployed blue/green by CodeDeploy. The green task set answers 5xx; "
        "the assessor compares its target group with the blue one and stops the deployment: production goes back "
        "to blue.",
        out,
    )
    behaviours = {
        stack.blue_target_group: VersionBehaviour(),
        stack.green_target_group: VersionBehaviour(regress_at=0, regressed_error_rate=0.06),
    }
    traffic = AlbTrafficSource(stack.prod_listener_arn, 3000, behaviours, seed=17)
    aws.clock.listeners.append(traffic.on_clock)
    started = time.perf_counter()
    sim_clock = aws.clock

    def step(line: str) -> None:
        out.write(f"  {sim_clock():%H:%M:%S}  {line}\n")

    def assessed(run: Any) -> None:
        for item in run.payload.get("assessed", []) if isinstance(run.payload, dict) else []:
            step(f"scheduled assessor: {item['decision'].upper()} {item['summary'][:110]}")

    undo = aws.follow_schedules(["AssessorFunction"], on_fire=assessed)
    try:
        result = simulate_ecs_rollout(
            stack, application="checkout-web", group="checkout-web-bg", on_step=step,
            hooks_function=lambda event: aws.invoke("LifecycleHookFunction", event),
            recorder_function=lambda event: aws.invoke("DeploymentRecorderFunction", event),
            clock_advance=aws.clock.advance,
        )  # fmt: skip
    finally:
        undo()
        aws.clock.listeners.remove(traffic.on_clock)
    aws.invoker.drain()
    where = f"production {100 - result.green_percent:.0f}% blue / {result.green_percent:.0f}% green"
    return _codedeploy_outcome("ecs-blue-green", result.deployment_id, result.final_state, where, started, out)


def _codedeploy_outcome(
    name: str, deployment_id: str, final_state: str, where: str, started: float, out: TextIO
) -> RolloutResult:
    """Print a CodeDeploy-driven rollout's audit trail, outcome and open incidents; its summary row."""
    from deployguard.workflows import runtime

    repository = DeploymentRepository()
    deployment = repository.find_deployment(deployment_id)
    out.write("  what DeployGuard recorded (its timeline, as deployguard deployments show prints it):\n")
    StoryPrinter(repository, out).flush(deployment_id)
    if deployment is not None:
        out.write(f"  => {deployment.status.value}: CodeDeploy {final_state}, {where}\n")
    incidents = runtime.alert_engine().incident_store.open_incidents_of(deployment_id)
    if incidents:
        listed = ", ".join(f"{i.incident_id} ({i.group})" for i in sorted(incidents, key=lambda i: i.group))
        out.write(f"  open incidents, for a person to acknowledge and resolve: {listed}\n")
    return RolloutResult(
        name=name,
        deployment=deployment,
        execution_status=final_state,
        assessments=len(repository.assessments(deployment_id)),
        events_published=_count_published(deployment_id),
        deliveries=len(repository.notifications(deployment_id)),
        wall_seconds=time.perf_counter() - started,
    )


def incident_followup(aws: EmbeddedAws, deployment_id: str, out: TextIO) -> None:
    """What follows the regression: its incidents stay open, their escalation stopped by the rollback (no page
    re-opens what the rollback resolved at PagerDuty), until a person acknowledges them from the CLI and resolves
    them; every step lands in the audit trail."""
    from deployguard.workflows import runtime
    from deployguard_local import incidents_cli

    assert aws.clock is not None
    engine = runtime.alert_engine()
    incidents = sorted(engine.incident_store.open_incidents_of(deployment_id), key=lambda i: i.group)
    story = StoryPrinter(DeploymentRepository(), io.StringIO())
    story.flush(deployment_id)  # what the rollout already printed
    story.out = out

    def what_followed() -> None:
        aws.invoker.drain()
        story.flush(deployment_id)

    out.write(f"\n== Incidents of {deployment_id} (deployguard incidents list)\n")
    out.flush()
    incidents_cli.main(["list"])
    out.write("\n== Nobody answers for two minutes: the release is rolled back, so escalation pages no one\n")
    aws.clock.advance(120)
    pages = engine.on_tick().pages
    for page in pages:
        out.write(f"   page {page.page_number} of {page.incident_id}: {', '.join(page.routes)}\n")
    out.write(f"   {len(pages)} pages: each incident's escalation stopped when its deployment was rolled back\n")
    what_followed()
    out.write("\n== The on-call engineer acknowledges (deployguard incidents ack ID --by alice)\n")
    out.flush()
    for incident in incidents:
        incidents_cli.main(["ack", incident.incident_id, "--by", "alice", "--notes", "looking"])
    what_followed()
    aws.clock.advance(600)
    out.write(f"   10 minutes later: {len(engine.on_tick().pages)} pages (escalation stopped)\n")
    out.write("\n== ... and resolves (deployguard incidents resolve ID --by alice --notes ...)\n")
    out.flush()
    for incident in incidents:
        incidents_cli.main(
            ["resolve", incident.incident_id, "--by", "alice", "--notes", "rolled back; fix next release"]
        )
    what_followed()
    out.write("\n== Incident history (deployguard incidents history)\n")
    out.flush()
    incidents_cli.main(["history"])


def flush_digests(aws: EmbeddedAws) -> None:
    """Let the digest window pass and run the router's schedule, as EventBridge would."""
    assert aws.clock is not None
    aws.clock.advance(60)
    event = json.loads((REPO_ROOT / "events" / "schedule.json").read_text(encoding="utf-8"))
    aws.invoke("NotificationRouterFunction", event)


def scenario_demo(path: Path, out: TextIO) -> list[RolloutResult]:
    """Replay one recorded scenario (deployguard-scenario/1) through the whole system.

    Period i's values of both versions are published to CloudWatch in the first minute of period
    i (``interval_seconds`` apart); the canary runs one step at the scenario's weight, baked the
    scenario's whole length (``intervals`` x ``interval_seconds``). A scenario longer than a canary
    step may bake (``canary.step_duration_seconds``, at most 3600 s) is refused as a configuration
    error naming the limit, before anything runs.
    """
    from deployguard.analysis.scenario import load_scenario, metric_specs_from_scenario
    from deployguard.config import parse_config
    from deployguard.exceptions import ConfigError, ScenarioError

    scenario = load_scenario(path)
    specs = [
        spec
        if spec.namespace == "AWS/Lambda"
        else spec.model_copy(update={"dimensions": {"FunctionName": "{function}", "Version": "{version}"}})
        for spec in metric_specs_from_scenario(scenario)
    ]
    weight = scenario.canary_weight * 100 or 1.0  # no traffic to the canary: the alias still moves
    config = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    config.pop("notifications", None)
    config["services"] = {
        "scenario-api": {
            "function_name": "scenario-api",
            "canary": {
                "steps": [min(weight, 99.0)],
                "step_duration_seconds": max(60, scenario.intervals * scenario.interval_seconds),
                "assessment_interval_seconds": scenario.interval_seconds,
            },
            "judge": {
                "metrics": [spec.model_dump(mode="json") for spec in specs],
                "max_inconclusive_periods": 1,
                "on_no_evidence": "hold",
            },
        }
    }
    try:
        parse_config(
            yaml.safe_dump(config), "scenario-config.yaml"
        )  # a limit it breaks: an error now, not a failed rollout
    except ConfigError as exc:
        raise ScenarioError(
            f"{path}: {scenario.intervals} intervals of {scenario.interval_seconds} s cannot run as one canary step:"
            f" {exc} (at most {3600 // scenario.interval_seconds} intervals of {scenario.interval_seconds} s)"
        ) from exc
    with tempfile.TemporaryDirectory() as tmp:
        config_file = Path(tmp) / "scenario-config.yaml"
        config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        with EmbeddedAws(config_file=config_file) as aws:
            versions = aws.deploy_sample_function("scenario-api", "live", sample_handler)
            traffic = ScenarioTrafficSource(
                scenario.model_dump(mode="json"), "scenario-api", "live", versions[0], versions[1]
            )
            result = run_rollout(aws, scenario.name[:22], "scenario-api", traffic, versions, out)
    if scenario.truth:
        out.write(f"  truth: {scenario.truth}\n")
    return [result]


def summary_json(results: list[RolloutResult]) -> list[dict[str, Any]]:
    return [
        {
            "rollout": r.name,
            "deployment_id": r.deployment.deployment_id if r.deployment else None,
            "decision": r.decision,
            "simulated_seconds_to_decision": r.simulated_seconds,
            "assessments": r.assessments,
            "events": r.events_published,
            "deliveries": r.deliveries,
            "wall_seconds": round(r.wall_seconds, 2),
        }
        for r in results
    ]


def main(
    scenario: Path | None = None,
    out: TextIO = sys.stdout,
    quiet: bool = False,
    as_json: bool = False,
    state_dir: Path | None = None,
) -> int:
    """Run the demo; ``quiet`` prints only the summary table, ``as_json`` only the summary as JSON.
    The built-in demo's state is saved (``state_dir``) for the ``--local`` read commands."""
    story: TextIO = io.StringIO() if quiet or as_json else out
    with contextlib.redirect_stdout(story) if story is not out else contextlib.nullcontext():
        results, receipts, saved = _run(scenario, story, state_dir)
    if as_json:
        reports = {name: str(path) for name, path in report_paths(results, saved).items()} if saved else {}
        summary = {"rollouts": summary_json(results), "receivers": receipts, "state_dir": str(saved) if saved else None,
                   "reports": reports}  # fmt: skip
        out.write(json.dumps(summary, indent=2) + "\n")
        return 0
    print_summary(results, out)
    if receipts:
        parts = ", ".join(f"{kind}={count}" for kind, count in receipts.items())
        out.write(f"\ndeliveries per channel: {parts} (local HTTP receivers on 127.0.0.1)\n")
    if saved is not None and not quiet:
        print_reports(results, saved, out)
    return 0


def _run(
    scenario: Path | None, out: TextIO, state_dir: Path | None
) -> tuple[list[RolloutResult], dict[str, int], Path | None]:
    out.write("DeployGuard demo: canary rollouts on the embedded AWS (moto), simulated clock\n")
    if scenario:
        return scenario_demo(scenario, out), {}, None
    with local_receivers(echo=None) as receivers:
        env = {f"DEMO_{kind.upper()}_URL": url for kind, url in receivers.urls.items()}
        with _environment(env), EmbeddedAws(config_file=DEMO_CONFIG) as aws:
            results = builtin_demo(aws, out)
            flush_digests(aws)
            aws.invoker.drain()
            for r in results:
                if r.deployment is not None:
                    r.deliveries = len(DeploymentRepository().notifications(r.deployment.deployment_id))
            saved = local_state.save(aws, state_dir)
        return results, receivers.counts(), saved


def report_paths(results: list[RolloutResult], state_dir: Path) -> dict[str, Path]:
    """rollout -> the HTML report the stack's ReportWriterFunction left in the (saved) ReportsBucket."""
    return {
        r.name: local_state.report_path(state_dir, "ReportsBucket", report_key(r.deployment.deployment_id, "html"))
        for r in results
        if r.deployment is not None
    }


def print_reports(results: list[RolloutResult], state_dir: Path, out: TextIO) -> None:
    """Where each rollout's report is (the stack's report writer put it in the ReportsBucket), and how to read more."""
    out.write(f"\nstate saved in {_shown(state_dir)}; read it with --local: deployguard deployments list --local\n")
    out.write("reports (written to the ReportsBucket by ReportWriterFunction when each deployment ended):\n")
    for name, html in report_paths(results, state_dir).items():
        dep = html.name.removesuffix(".html")
        where = _shown(html) if html.exists() else f"deployguard report {dep} --local --format html -o {dep}.html"
        out.write(f"  {name:<22} {where}\n")


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
