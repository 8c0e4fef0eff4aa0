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
        """rollout name -> deployment id, from the report lines the demo prints last."""
        found = {}
        for line in self.output.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[1:3] == ["deployguard", "report"]:
                found[parts[0]] = parts[3]
        return found
