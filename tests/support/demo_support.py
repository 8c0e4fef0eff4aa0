"""The session's demo run: run once for every worker (:func:`run_demo_once`), and what it left (:class:`DemoRun`).

python tests/support/demo_support.py SHARED_DIR   # what the xdist controller starts at once (tests/conftest.py)
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the tests that read the demo's run (its output or saved state): the prewarm starts only for them
DEMO_READERS = (
    "tests/integration/console/",
    "tests/integration/test_demo.py",
    "tests/integration/test_deployments_cli.py",
    "tests/integration/test_report_html.py",
    "tests/integration/test_cli_audit_demo_state.py",
    "tests/integration/control/test_control_cli_demo_state.py",
    "tests/integration/incidents/test_incidents_cli_demo_state.py",
    "tests/test_report_why_and_metrics.py",
    "tests/test_report_console_deployment.py",
    "tests/test_screenshots_tool.py",
    "tests/test_display_polish.py",
)


def run_demo_once(shared: Path) -> dict[str, Any]:
    """The demo's exit code and output, its local state saved in ``shared / "local-state"``: run by whoever
    comes first (a lock in ``shared``), read by everyone after."""
    import fcntl
    import io

    shared.mkdir(parents=True, exist_ok=True)
    result = shared / "result.json"
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result.exists():
            from deployguard_local import demo

            out = io.StringIO()
            code = demo.main(out=out, state_dir=shared / "local-state")
            result.write_text(json.dumps({"exit_code": code, "output": out.getvalue()}), encoding="utf-8")
    return dict(json.loads(result.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class DemoRun:
    exit_code: int
    output: str
    state_dir: Path

    def deployment_ids(self) -> dict[str, str]:
        """rollout name -> deployment id, from the report paths the demo prints last."""
        found = {}
        for line in self.output.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].endswith(".html") and "/reports/" in parts[1]:
                found[parts[0]] = parts[1].rsplit("/", 1)[1].removesuffix(".html")
        return found

    def report(self, rollout: str) -> Path:
        """The HTML report the stack's report writer left for a rollout."""
        return self.state_dir / "s3" / "ReportsBucket" / "reports" / f"{self.deployment_ids()[rollout]}.html"


def local(demo: DemoRun) -> list[str]:
    """The CLI's options that read the demo's saved state."""
    return ["--local", "--state-dir", str(demo.state_dir)]


if __name__ == "__main__":
    run_demo_once(Path(sys.argv[1]))
