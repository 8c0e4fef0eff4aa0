"""What the session's demo run left (see tests/integration/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
