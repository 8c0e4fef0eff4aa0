"""`make demo` end to end: every built-in rollout reaches the decision the README shows."""

from __future__ import annotations

import re

from demo_support import DemoRun


def test_builtin_demo_reaches_every_decision(demo_run: DemoRun) -> None:
    assert demo_run.exit_code == 0
    text = demo_run.output
    rows = {line.split()[0]: line.split()[1:5] for line in text.splitlines() if "(sim)" in line}
    assert rows == {
        "healthy-release": ["promoted", "9", "min", "(sim)"],
        "regression-midway": ["rolled_back", "6", "min", "(sim)"],
        "codedeploy-canary": ["rolled_back", "2", "min", "(sim)"],
        "ecs-blue-green": ["rolled_back", "2", "min", "(sim)"],  # its window starts when production reached green
    }
    assert "StopDeployment received during the canary" in text  # the ECS canary never reached 100%
    assert "production 100% blue / 0% green" in text
    assert "Traceback" not in text
    # the story is the read model's timeline (as `deployments show`): every verdict with its reason, in time order
    assert re.search(r"assessment failing at 25%, health \d+.*\(canary worse: errors: canary", text)
    for section in text.split("\n== "):
        times = re.findall(r"^  (\d\d:\d\d:\d\d)  (?:traffic|assessment|check|alert|incident|remediation|event) ",
                           section, re.MULTILINE)  # fmt: skip
        assert times == sorted(times), section
    assert (demo_run.state_dir / "state.json").exists()  # the read commands' --local state
    assert set(demo_run.deployment_ids()) == set(rows)
    for rollout in rows:  # the stack's report writer wrote each rollout's report when it ended
        assert demo_run.report(rollout).read_text(encoding="utf-8").startswith("<!DOCTYPE html>"), rollout
