"""Each handler's cold start imports only what it uses (issue 12 part 4).

Every handler is imported as Lambda does it, in a fresh interpreter (``PYTHONPATH`` = the layer and
the function's folder), and the modules it loaded are compared with what it must not load before
it needs them: the alert engine, incidents and remediation (only when an alert is evaluated or a
remediation runs), ``requests`` and the pinned HTTP session (only at the first send), the
configuration loader and YAML (on the first invocation), the judge (only where a judgement
happens), the report renderers and the OpenAPI document's models (only where they are used), and
the X-Ray SDK (only when Lambda traces the function). A module set, never a timing:
the CPU figures are measured by ``deployguard_local.cold_start`` (printed by ``deployguard bench scale``)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from deployguard_local.cold_start import (
    function_environment,
    layer_faults,
    make_layer,
    run_in_function,
)

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "deployguard"
HANDLERS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py"))

# loaded by no handler at import
NEVER_AT_IMPORT = {
    "aws_xray_sdk",  # tracing is not active here (no AWS_XRAY_DAEMON_ADDRESS)
    "requests",
    "deployguard.notification.pinned_http",
    "deployguard.notification.delivery",
    "deployguard.notification.router",
    "deployguard.notification.secrets",
    "deployguard.alerts.engine",
    "deployguard.incidents.service",
    "deployguard.incidents.trackers",
    "deployguard.remediation.executor",
    "deployguard.remediation.actions",
    "deployguard.remediation.store",
    "deployguard.aws.ecs",  # ECS deployments only
    "deployguard.aws.elbv2",
    # the configuration (YAML, every settings model) is loaded by the first invocation (runtime.config()),
    # the assessors' included: their workflows name it in annotations only
    "yaml",
    "deployguard.config",
    "deployguard.alerts.settings",
    "deployguard.notification.settings",
    "deployguard.hooks.settings",
    # the renderers: the first report rendered (the console's report route, the report writer)
    "deployguard.reporting.html",
    "deployguard.reporting.markdown",
    "deployguard.reporting.charts",
    # the OpenAPI document's models: GET /openapi.json only (request validation does not need them)
    "aws_lambda_powertools.event_handler.openapi.models",
}
# the minute tick judges on every run with a canary due: deployguard.workflows.assessor imports the judge
JUDGES_EVERY_RUN = {"assessor", "assessor_shard"}
NOT_BEFORE_FIRST_USE = {
    "deployguard.analysis.judge",
    "deployguard.analysis.evidence",
    "deployguard.alerts.fields",
    "deployguard.workflows.assessment",
    "deployguard.aws.cloudwatch",
}
# the traffic clients: the reconciler's checks (a few in an ended deployment's first day), the weight re-check
NOT_EVERY_TICK = {"deployguard.aws.codedeploy", "deployguard.aws.lambda_traffic"}


def modules_after_import(handler: str, **extra_env: str) -> set[str]:
    """The modules loaded by ``import app`` of functions/<handler>, in a fresh interpreter whose
    path is Lambda's (the function's folder, then the layer) and environment the function's
    (:func:`function_environment`: not traced unless ``extra_env`` says so)."""
    code = "import json, sys; import app; print(json.dumps(sorted(sys.modules)))"
    return set(
        json.loads(run_in_function(code, [ROOT / "functions" / handler, LAYER], function_environment() | extra_env))
    )


def _loaded(modules: set[str], names: set[str]) -> set[str]:
    """The names (or a submodule of them) present in ``modules``."""
    return {n for n in names if n in modules or any(m.startswith(n + ".") for m in modules)}


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_handler_imports_only_what_its_cold_path_uses(handler: str) -> None:
    modules = modules_after_import(handler)
    assert "app" in modules and "deployguard.workflows.runtime" in modules  # the handler really was imported
    assert _loaded(modules, NEVER_AT_IMPORT) == set()
    if handler in JUDGES_EVERY_RUN:
        assert _loaded(modules, NOT_EVERY_TICK) == set()
    else:
        assert _loaded(modules, NOT_BEFORE_FIRST_USE) == set()


@pytest.mark.parametrize("handler", HANDLERS)
def test_every_handler_is_traced_when_lambda_traces_the_function(handler: str) -> None:
    """Active tracing (Lambda sets the daemon address) decorates each handler with the Powertools
    Tracer, which needs the X-Ray SDK: no handler may be left untraced (the notification router was)."""
    traced = modules_after_import(handler, AWS_XRAY_DAEMON_ADDRESS="127.0.0.1:2000")
    assert "aws_xray_sdk" in traced


def test_the_xray_sdk_is_not_imported_when_tracing_is_disabled() -> None:
    disabled = modules_after_import(
        "lifecycle_hook", AWS_XRAY_DAEMON_ADDRESS="127.0.0.1:2000", POWERTOOLS_TRACE_DISABLED="true"
    )
    assert "aws_xray_sdk" not in disabled


def test_the_functions_skip_pydantic_plugin_discovery() -> None:
    """No pydantic plugin is used; without this the first model built reads every distribution's entry points."""
    from deployguard_local.template import Stack

    variables = Stack.load(ROOT).template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["PYDANTIC_DISABLE_PLUGINS"] == "__all__"


@pytest.mark.skipif(
    sys.version_info[:2] != (3, 11), reason="the layer's bytecode is compiled by Python 3.11, Lambda's runtime"
)
def test_the_layer_recipe_drops_the_runtimes_packages_and_compiles_every_module(tmp_path: Path) -> None:
    """The recipe's step after pip (``make layer-package``, offline) over real installed packages: what the
    runtime ships (jmespath, dateutil, six here) is removed, deployguard is added, and every module gets
    bytecode that Python 3.11 uses whatever the files' times (``layer_faults``, the check the cold-start
    measurement runs on the whole layer, pip's download included); a handler imported with that layer as
    Lambda does (nothing written) takes the layer's modules."""
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    python = tmp_path / "python"
    python.mkdir()
    for installed in [site / "six.py", *(site / name for name in ("yaml", "jmespath", "dateutil")),
                      *site.glob("jmespath-*.dist-info")]:  # fmt: skip
        if installed.is_dir():
            shutil.copytree(installed, python / installed.name)
        else:
            shutil.copy2(installed, python / installed.name)
    assert make_layer(ROOT, tmp_path, "layer-package") == python
    assert layer_faults(python, frozenset({"deployguard", "yaml"})) == []
    assert {p.name for p in python.iterdir()} == {"deployguard", "yaml"}
    assert len(list(python.rglob("*.pyc"))) > 100
    code = "import app, deployguard.models as m, yaml; print(m.__file__, yaml.__file__)"
    loaded = run_in_function(code, [ROOT / "functions" / "lifecycle_hook", python]).split()
    assert all(path.startswith(str(python)) for path in loaded)


def test_a_layer_check_names_what_is_wrong(tmp_path: Path) -> None:
    """A module without bytecode, a runtime package shipped, a package missing: each named."""
    python = tmp_path / "python"
    (python / "botocore").mkdir(parents=True)
    (python / "botocore" / "__init__.py").write_text("")
    assert layer_faults(python, frozenset({"deployguard"})) == [
        "deployguard is missing",
        "botocore is shipped (the runtime has it)",
        "botocore/__init__.py has no unchecked-hash bytecode of this Python",
    ]


@pytest.mark.parametrize("powertools", ["installed", "as in the layer"])
def test_a_console_request_validates_without_the_openapi_models_and_the_document_still_has_them(
    powertools: str, request: pytest.FixtureRequest
) -> None:
    """The real read handler with an API Gateway (payload 2.0) request: a bad deployment id is refused
    by the route's validation (400 naming the field) without the OpenAPI document's models; GET
    /openapi.json imports them and its document still declares both security schemes. With Powertools
    as installed and as the layer ships it (its package ``__init__`` files made lazy)."""
    env = function_environment() | {
        "DEPLOYMENTS_TABLE": "deployments",
        "EVENTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:events",
    }
    code = """
import json, sys
from types import SimpleNamespace
import app
MODELS = "aws_lambda_powertools.event_handler.openapi.models"
def get(path):
    http = {"method": "GET", "path": path, "sourceIp": "10.0.0.1"}
    caller = {"iam": {"userArn": "arn:aws:iam::123456789012:user/ops"}}
    event = {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "", "headers": {},
             "isBase64Encoded": False,
             "requestContext": {"http": http, "authorizer": caller, "requestId": "r", "stage": "$default"}}
    context = SimpleNamespace(function_name="console", memory_limit_in_mb=512, aws_request_id="r",
                              invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:console",
                              get_remaining_time_in_millis=lambda: 9000)
    return app.read_handler(event, context)
refused = get("/api/deployments/-bad")
after_request = MODELS in sys.modules
document = get("/openapi.json")
print(json.dumps([refused["statusCode"], json.loads(refused["body"]), after_request, document["statusCode"],
                  sorted(json.loads(document["body"])["components"]["securitySchemes"]), MODELS in sys.modules]))
"""
    path = [ROOT / "functions" / "console_api", LAYER]
    if powertools != "installed":
        path.append(request.getfixturevalue("lazy_powertools"))  # ahead of the installed one
    out = run_in_function(code, path, env, "-W", "ignore")
    status, body, models_after_request, document_status, schemes, models_after_document = json.loads(out)
    assert (status, body["field"]) == (400, "path.deployment_id")
    assert models_after_request is False
    assert (document_status, schemes, models_after_document) == (200, ["bearer", "sigv4"], True)


def test_the_bench_measures_in_the_functions_environment_whatever_the_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cold-import figures do not depend on the shell they are run from: nothing is written (Lambda's
    /opt and /var/task are read-only), the template's variables are set, the caller's Python and tracing
    variables are dropped."""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:2000")
    monkeypatch.delenv("PYDANTIC_DISABLE_PLUGINS", raising=False)
    env = function_environment()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYDANTIC_DISABLE_PLUGINS"] == "__all__" and env["POWERTOOLS_SERVICE_NAME"] == "deployguard"
    assert "PYTHONPATH" not in env and "AWS_XRAY_DAEMON_ADDRESS" not in env


def _lazy_init_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("lazy_package_init", LAYER / "lazy_package_init.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def lazy_powertools(tmp_path: Path) -> Path:
    """A copy of the installed (pinned) Powertools with the layer's rewrite of its package ``__init__`` files."""
    import aws_lambda_powertools

    from deployguard_local.cold_start import LAZY_INITS

    installed = Path(aws_lambda_powertools.__file__).parent
    shutil.copytree(installed, tmp_path / "aws_lambda_powertools", ignore=shutil.ignore_patterns("__pycache__"))
    assert _lazy_init_module().main([str(tmp_path / init) for init in LAZY_INITS]) == 0
    return tmp_path


def test_the_layers_powertools_packages_export_the_same_objects_lazily(lazy_powertools: Path) -> None:
    """The layer's rewrite of Powertools' event_handler and data_classes ``__init__``: the API Gateway resolver
    comes without AppSync, asyncio and the other event classes, and every exported name is the very object
    the original package gives (``event_source``, also a submodule's name, stays the decorator)."""
    code = """
import importlib, json, sys
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
loaded = sorted(m for m in ("asyncio", "aws_lambda_powertools.event_handler.appsync",
                            "aws_lambda_powertools.utilities.data_classes.kafka_event") if m in sys.modules)
out = [loaded]
for package in ("aws_lambda_powertools.event_handler", "aws_lambda_powertools.utilities.data_classes"):
    lazy = importlib.import_module(package)
    where = {n: [getattr(getattr(lazy, n), "__module__", None), getattr(getattr(lazy, n), "__qualname__", None)]
             for n in lazy.__all__}
    out.append([lazy.__file__, sorted(lazy.__all__), where, type(lazy.appsync if "event_handler" in package
                                                                 else lazy.kafka_event).__name__])
import aws_lambda_powertools.utilities.data_classes.event_source
from aws_lambda_powertools.utilities.data_classes import event_source
out.append(callable(event_source) and not isinstance(event_source, type(sys)))
print(json.dumps(out))
"""
    loaded, handler, classes, decorator = json.loads(run_in_function(code, [lazy_powertools]))
    original = """
import importlib, json
out = []
for p in {}:
    package = importlib.import_module(p)
    out.append([sorted(package.__all__), {{n: [getattr(getattr(package, n), "__module__", None),
                                             getattr(getattr(package, n), "__qualname__", None)]
                                          for n in package.__all__}}])
print(json.dumps(out))
"""
    packages = ("aws_lambda_powertools.event_handler", "aws_lambda_powertools.utilities.data_classes")
    names = json.loads(run_in_function(original.format(packages), [ROOT]))
    assert loaded == [] and decorator
    for (file, exported, where, submodule), package, before in zip((handler, classes), packages, names, strict=True):
        assert file == str(lazy_powertools.joinpath(*package.split("."), "__init__.py"))
        # the same names, each the object of the same module and qualified name as the installed package's
        assert [exported, where] == before
        assert submodule == "module"  # a submodule is an attribute of the package, as the original's imports made it


def test_the_lazy_rewrite_refuses_an_init_that_does_more_than_reexport() -> None:
    lazy = _lazy_init_module()
    with pytest.raises(lazy.NotReexportsOnly, match=r"__init__.py:2: not a re-export"):
        lazy.lazy_source("from a import b\nregister(b)\n__all__ = ['b']\n")
    with pytest.raises(lazy.NotReexportsOnly, match="__all__"):
        lazy.lazy_source("from a import b\n__all__ = ['b', 'c']\n")
    source = lazy.lazy_source('"""doc"""\nfrom a import b\n__all__ = ["b"]\n')
    assert lazy.lazy_source(source) == source  # once rewritten, left alone
