"""Each handler's cold import, measured as Lambda imports it (issue 12 part 4).

Lambda runs ``import app`` in a fresh interpreter whose path is the function's folder (``/var/task``),
then the layer (``/opt/python``), then the runtime's own packages (boto3 and botocore among them, with
their bytecode). ``/var/task`` and ``/opt`` are read-only: whatever has no ``__pycache__`` there is
compiled again on every cold start, and nothing is written.

So the layer is built here by the build's own recipe (``layers/deployguard/Makefile``, the one
``sam build`` runs), twice: as shipped (bytecode compiled at build time) and without bytecode (the
``python3.11`` build method's layer, what SAM made before). The function folders are copied without
``__pycache__`` (SAM copies them so), ``PYTHONDONTWRITEBYTECODE`` is set, and the environment holds the
template's global variables (``PYDANTIC_DISABLE_PLUGINS`` among them). The CPU time of ``import app``
(``time.process_time``, the interpreter's own start-up left out) is compared with that of ``import boto3``
alone in the same environment, runs of all of them interleaved, the least of ``repeats`` (on a shared
machine other processes only ever add to a run's CPU time: the least is the one they disturbed least).

``python -m deployguard_local.cold_start [--repeats N] [--json] [--before TREE]`` prints the table; ``--before``
measures another tree (an export of main, say) with the same recipe, interleaved with this one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LAYER_SOURCE = ROOT / "layers" / "deployguard"
WORK = ROOT / "build" / "cold-imports"
VARIANTS = {"compiled": True, "without_bytecode": False}  # the layer's bytecode compiled at build time, or not


def build_layer(tree: Path, out: Path, compiled: bool) -> Path:
    """The layer of ``tree`` built by the build's recipe into ``out``; returns its ``python`` folder (/opt/python)."""
    command = ["make", "-s", "-f", str(LAYER_SOURCE / "Makefile"), "-C", str(tree / "layers" / "deployguard"),
               "build-DeployGuardLayer", f"ARTIFACTS_DIR={out}", f"PYTHON={sys.executable}",
               f"COMPILE_BYTECODE={int(compiled)}"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"building the layer failed: {done.stderr[-2000:]}")
    return out / "python"


def function_folders(tree: Path, out: Path) -> dict[str, Path]:
    """Every function's folder of ``tree`` copied as ``sam build`` copies it (no ``__pycache__``)."""
    folders = {}
    for app in sorted((tree / "functions").glob("*/app.py")):
        target = out / app.parent.name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(app.parent, target, ignore=shutil.ignore_patterns("__pycache__"))
        folders[app.parent.name] = target
    return folders


def function_environment() -> dict[str, str]:
    """The process environment less what would change an import (Python's and tracing's variables), plus the
    template's global function variables that are plain strings (references resolve only on AWS)."""
    from deployguard_local.template import Stack

    variables = Stack.load(ROOT).template["Globals"]["Function"]["Environment"]["Variables"]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "AWS_XRAY_", "_X_AMZN_", "POWERTOOLS_TRACE"))}  # fmt: skip
    env |= {k: v for k, v in variables.items() if isinstance(v, str)}
    return env | {"PYTHONDONTWRITEBYTECODE": "1"}


def _run(code: str, path: list[Path], env: dict[str, str]) -> str:
    """The last line ``code`` prints in a fresh interpreter with ``path`` first on ``sys.path``."""
    env = env | {"PYTHONPATH": os.pathsep.join(str(p) for p in path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=path[0])
    if done.returncode:
        raise RuntimeError(f"{code} failed: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def cpu_ms(code: str, path: list[Path], env: dict[str, str]) -> float:
    """CPU milliseconds of ``code`` in a fresh interpreter with ``path`` first on ``sys.path``."""
    timed = f"import time; s = time.process_time(); {code}; print(time.process_time() - s)"
    return float(_run(timed, path, env)) * 1000


def imports_boto3(folder: Path, layer: Path, env: dict[str, str]) -> bool:
    """Whether ``import app`` imports boto3 (every handler needs it by its first AWS call)."""
    return _run("import sys, app; print('boto3' in sys.modules)", [folder, layer], env) == "True"


def measure(trees: dict[str, Path], repeats: int = 5) -> dict[str, Any]:
    """For each tree (a name and its root folder) and layer variant: ``import boto3`` and each handler's
    ``import app`` (CPU ms, the least of ``repeats`` runs, all of them interleaved) and their ratio. A
    handler whose import leaves boto3 out (it pays for it at its first AWS call) is also measured with
    ``import boto3`` after it (``with_boto3_ms``, ``with_boto3_ratio``), comparable with the others."""
    env = function_environment()
    setups = {}  # (tree, variant) -> (layer, function folders, the handlers whose import takes boto3)
    for tree, root in trees.items():
        folders = function_folders(root, WORK / tree / "functions")
        for variant, compiled in VARIANTS.items():
            layer = build_layer(root, WORK / tree / variant, compiled)
            takes_boto3 = {name for name, folder in folders.items() if imports_boto3(folder, layer, env)}
            setups[(tree, variant)] = (layer, folders, takes_boto3)
    samples: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(repeats):
        for (tree, variant), (layer, folders, takes_boto3) in setups.items():
            samples.setdefault((tree, variant, "boto3"), []).append(cpu_ms("import boto3", [layer], env))
            for name, folder in folders.items():
                samples.setdefault((tree, variant, name), []).append(cpu_ms("import app", [folder, layer], env))
                if name not in takes_boto3:
                    ms = cpu_ms("import app; import boto3", [folder, layer], env)
                    samples.setdefault((tree, variant, name + "+boto3"), []).append(ms)
    result: dict[str, Any] = {tree: {} for tree in trees}
    for (tree, variant), (_, folders, takes_boto3) in setups.items():
        # boto3 is the same in every tree (the runtime's, with the layer's urllib3): its runs are pooled
        boto3_ms = min(ms for t in trees for ms in samples[(t, variant, "boto3")])
        handlers: dict[str, dict[str, Any]] = {}
        for name in folders:
            ms = min(samples[(tree, variant, name)])
            figures = {"ms": round(ms, 1), "ratio": round(ms / boto3_ms, 2), "imports_boto3": name in takes_boto3}
            handlers[name] = figures
            if name not in takes_boto3:
                both = min(samples[(tree, variant, name + "+boto3")])
                figures |= {"with_boto3_ms": round(both, 1), "with_boto3_ratio": round(both / boto3_ms, 2)}
        result[tree][variant] = {"boto3_ms": round(boto3_ms, 1), "handlers": handlers}
    return result


def cold_imports(repeats: int = 5) -> dict[str, Any]:
    """This tree's figures: the top-level ``boto3_ms`` and ``handlers`` are the shipped (compiled) layer's,
    ``without_bytecode`` the same with a layer without bytecode."""
    figures = measure({"this": ROOT}, repeats)["this"]
    return {**figures["compiled"], "without_bytecode": figures["without_bytecode"], "repeats": repeats}


def table(result: dict[str, Any]) -> str:
    """Per tree, the handlers' ms and ratio with the compiled layer, then without bytecode."""
    lines = []
    for tree, variants in result.items():
        compiled, bare = variants["compiled"], variants["without_bytecode"]
        lines.append(f"{tree:<22} {'compiled layer':>22} {'layer without bytecode':>24}")
        for name, figures in compiled["handlers"].items():
            other = bare["handlers"][name]
            note = "" if figures["imports_boto3"] else (
                f"  (boto3 at its first AWS call; with it {figures['with_boto3_ratio']:.2f}x"
                f" and {other['with_boto3_ratio']:.2f}x)")  # fmt: skip
            lines.append(f"  {name:<20} {figures['ms']:>10.1f} ms {figures['ratio']:>6.2f}x"
                         f" {other['ms']:>12.1f} ms {other['ratio']:>6.2f}x{note}")  # fmt: skip
        lines.append(f"  {'import boto3':<20} {compiled['boto3_ms']:>10.1f} ms {'':>7} {bare['boto3_ms']:>12.1f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployguard_local.cold_start", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--before", type=Path, help="another tree (e.g. an export of main), measured interleaved")
    args = parser.parse_args(argv)
    trees = {"before": args.before.resolve(), "this": ROOT} if args.before else {"this": ROOT}
    result = measure(trees, args.repeats)
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
