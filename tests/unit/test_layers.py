"""The floors of ../shared/design/layers.md: imports run downward, and no import circle in deployguard_local
nor in the deployguard package: every import counts, those
inside functions too (a lazy import hides a circle, it does not break it), and importing ``a.b.c``
imports the packages ``a`` and ``a.b`` first.

The modules are parsed in a fresh interpreter (this file run as a script): CPython 3.11's ``ast.parse``
can fail with "recursion depth mismatch" in a process where another test hit a RecursionError."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"deployguard_local": ROOT / "src", "deployguard": ROOT / "layers" / "deployguard"}
GROUND = {"models", "exceptions", "clock", "inbound"}
DOMAIN = {"alerts", "incidents", "remediation", "notification", "analysis"}
ACCESS = {"aws", "storage"}
ABOVE_DOMAIN = {"workflows", "readmodels", "reporting", "hooks", "console_api"}


def _modules(root: Path, package: str) -> dict[str, Path]:
    found = {}
    for path in (root / package).rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets += [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    edges = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):  # the packages on the way are imported too
            module = ".".join(parts[:i])
            if module in known and module != name and not name.startswith(module + "."):
                edges.add(module)
    return edges


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    known = _modules(PACKAGES[package], package)
    return {name: _imports(name, path, known) for name, path in known.items()}


def _graph_of(package: str) -> dict[str, set[str]]:
    done = subprocess.run([sys.executable, __file__, package], capture_output=True, text=True, check=True)
    return {name: set(edges) for name, edges in json.loads(done.stdout).items()}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_circle(package: str) -> None:
    graph = _graph_of(package)
    assert "deployguard_local.emulator" in graph or package != "deployguard_local"
    assert _circles(graph) == []


def _floor_rule(module: str, target: str) -> str | None:
    """Why ``module`` may not import ``target`` (None: it may)."""
    top, to = (name.split(".")[1] if "." in name else "" for name in (module, target))
    if top in GROUND and to not in GROUND | {""}:
        return "the ground imports nothing above it"
    settings_path = target.endswith(".settings") or target == f"deployguard.{to}"  # a package on the way
    if top == "config" and not (to in GROUND or settings_path):
        return "the configuration loader composes the domains' settings models only"
    if top in ACCESS and to not in ACCESS | GROUND | {"config", ""}:
        return "aws/ and storage/ know no workflow or domain rule"
    if top == "analysis" and to not in {"analysis", "models", "exceptions", "inbound", ""}:
        return "analysis/ stays pure statistics (no AWS, no storage, no clock)"
    if top in DOMAIN and to in ABOVE_DOMAIN:
        return "a domain package never imports a workflow"
    return None


def test_imports_run_downward() -> None:
    wrong = [
        f"{module} -> {target}: {rule}"
        for module, targets in sorted(_graph_of("deployguard").items())
        for target in sorted(targets)
        if (rule := _floor_rule(module, target))
    ]
    assert wrong == []


def test_a_wrong_direction_is_found() -> None:
    assert _floor_rule("deployguard.analysis.judge", "deployguard.aws.cloudwatch")
    assert _floor_rule("deployguard.notification.router", "deployguard.workflows.runtime")
    assert _floor_rule("deployguard.config", "deployguard.analysis.judge")
    assert _floor_rule("deployguard.config", "deployguard.analysis.settings") is None


def test_workflows_sit_in_one_folder() -> None:
    top = {p.stem for p in (PACKAGES["deployguard"] / "deployguard").glob("*.py")}
    assert top - GROUND - {"__init__", "config", "console_api"} == set()


# Modules above the access floor that make their own AWS calls: none (a new one is a defect; the last three,
# notification/delivery.py, dlq.py and secrets.py, moved theirs into aws/sns.py, sqs.py and parameters.py)
OWN_AWS_CALLS: set[str] = set()


def test_aws_calls_sit_in_the_access_floor() -> None:
    root = PACKAGES["deployguard"] / "deployguard"
    calling = {
        path.relative_to(root).as_posix()
        for path in root.rglob("*.py")
        if "clients.client(" in path.read_text(encoding="utf-8") and path.relative_to(root).parts[0] not in ACCESS
    }
    assert calling == OWN_AWS_CALLS


def test_a_circle_is_found() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


if __name__ == "__main__":
    print(json.dumps({name: sorted(edges) for name, edges in import_graph(sys.argv[1]).items()}))
