"""Shared test setup: never reach real AWS; the embedded AWS (moto) on demand."""

from __future__ import annotations

import functools
import gc
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# before anything imports boto3: fake credentials, a region, quiet Powertools
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_SERVICE_NAME": "deployguard",
        "POWERTOOLS_METRICS_NAMESPACE": "DeployGuard",
    }
)
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "DEPLOYGUARD_ENDPOINT_URL", "DEPLOYGUARD_CONFIG_FILE"):
    os.environ.pop(_var, None)


@functools.cache
def _service_models() -> Any:
    """botocore's data (service models, endpoints, partitions), read once per test process."""
    import botocore.loaders

    return botocore.loaders.create_loader()


def _share_service_models() -> None:
    """Every botocore session of the test process reads its data through one loader (as the embedded AWS's do):
    moto gives each ``mock_aws`` a new default boto3 session, whose new loader read the endpoints and each
    service's model from JSON again (hundreds of bare ``mock_aws`` fixtures: about a tenth of the suite's CPU).
    The models are the same files, only read once; boto3 adds its data folder to the loader at each session
    (kept once)."""
    import boto3.session
    import botocore.session

    def register_data_loader(self: Any) -> None:
        self._components.lazy_register_component("data_loader", _service_models)

    botocore.session.Session._register_data_loader = register_data_loader  # type: ignore[method-assign]
    boto3_init = boto3.session.Session.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        boto3_init(self, *args, **kwargs)
        paths = self._loader.search_paths
        paths[:] = list(dict.fromkeys(paths))

    boto3.session.Session.__init__ = init  # type: ignore[method-assign]


_share_service_models()


def _share_resource_classes() -> None:
    """A boto3 sub-resource (``resource("dynamodb").Table(name)``, what ``DeploymentRepository.table`` returns
    at every call) builds its class again from the resource model each time: about 2 ms of CPU, thousands of
    times in the suite. The class depends only on its factory, name and the parent's service context, so the
    test process builds it once per (factory, name, context) and makes the instance as before. The context is
    kept with the class (its id stays unique); the oldest are dropped past a bound."""
    from collections import OrderedDict

    from boto3.resources.factory import ResourceFactory

    load = ResourceFactory.load_from_definition
    built: OrderedDict[tuple[int, str, int], tuple[Any, Any, Any]] = OrderedDict()

    def load_from_definition(
        self: Any, resource_name: str, single_resource_json_definition: Any, service_context: Any
    ) -> Any:
        key = (id(self), resource_name, id(service_context))
        found = built.get(key)
        if found is not None and found[0] is self and found[1] is service_context:
            return found[2]
        cls = load(self, resource_name, single_resource_json_definition, service_context)
        built[key] = (self, service_context, cls)
        while len(built) > 256:
            built.popitem(last=False)
        return cls

    ResourceFactory.load_from_definition = load_from_definition  # type: ignore[method-assign]


_share_resource_classes()

REPO_ROOT = Path(__file__).resolve().parents[1]
EVENTS_DIR = REPO_ROOT / "events"
DEMO_CONFIG = REPO_ROOT / "examples" / "deployguard.yaml"


def load_event(name: str) -> Any:
    return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))


@pytest.fixture
def embedded() -> Iterator[Any]:
    """The whole stack on the embedded AWS, configured like the demo, with the sample app seeded."""
    from deployguard_local.emulator import EmbeddedAws

    with EmbeddedAws(config_file=DEMO_CONFIG) as aws:
        yield aws


@pytest.fixture
def faults(embedded: Any) -> Iterator[Any]:
    """Faults answering the embedded AWS's calls (``deployguard_local.chaos.faults.FaultInjector``, through
    botocore's hooks), botocore's back-off on its simulated clock."""
    from deployguard_local.chaos.faults import FaultInjector

    assert embedded.clock is not None
    with FaultInjector(embedded.clock) as injector:
        yield injector


@pytest.fixture
def repository(embedded: Any) -> Any:
    from deployguard.storage.repository import DeploymentRepository

    return DeploymentRepository()


@pytest.fixture
def atomic_dynamodb() -> Iterator[None]:
    """moto's DynamoDB made atomic between threads, as the embedded AWS has it (for bare mock_aws tests)."""
    from deployguard_local.emulator import atomic_dynamodb as serialise

    undo = serialise()
    yield
    undo()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The built-in demo, run once per test run: its output and the local state it saves. With xdist the
    controller starts it at once beside the workers (:func:`pytest_xdist_node_collection_finished`), else the
    first worker that needs it runs it; the others wait on a lock in the run's common folder, and each worker
    gets its own copy of the saved state (a test may write to it)."""
    import shutil

    from demo_support import DemoRun, run_demo_once

    base = tmp_path_factory.getbasetemp()
    under_xdist = os.environ.get("PYTEST_XDIST_WORKER") is not None  # also without the xdist plugin
    shared = (base.parent if under_xdist else base) / "demo-run"
    saved = run_demo_once(shared)
    state_dir = tmp_path_factory.mktemp("local-state")
    shutil.copytree(shared / "local-state", state_dir, dirs_exist_ok=True)
    return DemoRun(saved["exit_code"], saved["output"], state_dir)


# The longest test files (seconds of test time, one run): with ``--dist loadfile`` the workers take
# files in collection order, so these go first and the short ones fill the end (no worker left
# alone with a long file while the other idles). An ordering only: every file still runs whole.
LONGEST_FILES = {
    "tests/integration/control/test_canary_control.py": 42,
    "tests/integration/test_fail_safe_canary.py": 33,
    "tests/integration/control/test_control_cli_local.py": 29,
    "tests/unit/test_cold_imports.py": 22,
    "tests/integration/test_functions_with_events.py": 25,
    "tests/integration/alerts/test_default_rules_fire.py": 22,
    "tests/integration/incidents/test_issue_trackers.py": 26,
    "tests/integration/test_canary_state_machine.py": 20,
    "tests/integration/test_report_html.py": 18,
    "tests/integration/console/test_console_page.py": 16,
    "tests/integration/console/test_console_api.py": 15,
    "tests/integration/test_cli_output.py": 15,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest files first (:data:`LONGEST_FILES`), each file's tests kept together and in order."""

    def weight(item: pytest.Item) -> int:
        return -LONGEST_FILES.get(Path(str(item.fspath)).relative_to(REPO_ROOT).as_posix(), 0)

    items.sort(key=weight)  # stable: the other files keep their order


_DEMO_BESIDE: list[Any] = []  # the demo run the xdist controller started beside its workers


@pytest.hookimpl(optionalhook=True)  # an xdist hook: a run without xdist never calls it
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """With xdist, the controller starts the session's demo run at once, beside the workers, when the run has
    integration tests (they read it): no worker then waits for it idle, several minutes in, while the other
    works. The workers' ``demo_run`` fixture waits on the same lock and reads its result."""
    import subprocess
    import sys

    from demo_support import DEMO_READERS

    if _DEMO_BESIDE or not any(i.startswith(DEMO_READERS) for i in ids):
        return
    shared = node.config._tmp_path_factory.getbasetemp() / "demo-run"  # the workers' basetemp is one below
    shared.mkdir(exist_ok=True)
    script = REPO_ROOT / "tests" / "support" / "demo_support.py"
    _DEMO_BESIDE.append(subprocess.Popen([sys.executable, str(script), str(shared)], cwd=REPO_ROOT,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip


def pytest_unconfigure(config: pytest.Config) -> None:
    """The run is over (passed, failed, stopped): the demo run beside it is no longer needed."""
    import subprocess

    for process in _DEMO_BESIDE:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def pytest_configure(config: pytest.Config) -> None:
    """The tests make millions of short-lived objects (moto's items, botocore's requests) beside a large heap that
    lives as long as the run (modules, models, parsers): the objects alive now are set aside from every later
    collection (``gc.freeze``) and the youngest generation is collected less often. About a tenth less CPU, some
    60 MB more memory a worker; what a test frees is still freed as before."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 20, 10)
