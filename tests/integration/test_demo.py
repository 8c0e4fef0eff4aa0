"""`make demo` end to end: every built-in rollout reaches the decision the README shows."""

from __future__ import annotations

import io

from deployguard_local import demo


def test_builtin_demo_reaches_every_decision() -> None:
    out = io.StringIO()
    assert demo.main(out=out) == 0
    text = out.getvalue()
    rows = {line.split()[0]: line.split()[1:5] for line in text.splitlines()[-8:] if "(sim)" in line}
    assert rows == {
        "healthy-release": ["promoted", "9", "min", "(sim)"],
        "regression-midway": ["rolled_back", "6", "min", "(sim)"],
        "codedeploy-canary": ["rolled_back", "2", "min", "(sim)"],
        "ecs-blue-green": ["rolled_back", "1", "min", "(sim)"],
    }
    assert "StopDeployment received during the canary" in text  # the ECS canary never reached 100%
    assert "production 100% blue / 0% green" in text
    assert "Traceback" not in text
