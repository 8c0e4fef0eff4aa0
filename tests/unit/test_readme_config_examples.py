"""The README's configuration examples pass `deployguard config validate`, as the README shows them."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from deployguard.config import check_config
from deployguard_local import cli
from deployguard_local.config_cli import router_problems

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_the_notifications_example_validates_as_deployed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEPLOYGUARD_LOCAL", raising=False)  # as on AWS: secrets from SSM / Secrets Manager
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", README, re.DOTALL) if b.startswith("notifications:"))
    config, problems = check_config(block, "README.md", checks=[router_problems])
    assert problems == [] and config is not None, [str(p) for p in problems]
    assert "checkout" in config.notifications.service_overrides


def test_the_demo_configuration_validates_with_the_variables_the_readme_gives(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    command = re.search(r"`(DEPLOYGUARD_LOCAL=1 DEMO_.*?config\s+validate examples/demo\.yaml)`", README, re.DOTALL)
    assert command, "the README says how to validate examples/demo.yaml by itself"
    words = shlex.split(command.group(1))
    for word in words[: words.index("deployguard")]:
        name, value = word.split("=", 1)
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(REPO)
    assert cli.main([*words[words.index("deployguard") + 1 :]]) == 0
    assert capsys.readouterr().out.startswith("ok examples/demo.yaml")
