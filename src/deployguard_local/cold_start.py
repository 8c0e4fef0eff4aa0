"""Each handler's cold import, measured as Lambda imports it (issue 12 part 4).

Lambda runs ``import app`` in a fresh interpreter whose path is the function's folder (``/var/task``),
then the layer (``/opt/python``), then the runtime's own packages (boto3 and botocore among them, with
their bytecode). ``/var/task`` and ``/opt`` are read-only: whatever has no ``__pycache__`` there is
compiled again on every cold start, and nothing is written.

So the layer is built once per tree by the build's own recipe (``layers/deployguard/Makefile``, the one
``sam build`` runs: pip, then bytecode compiled) and checked (:func:`layer_faults`); ``--without-bytecode``
also measures a copy of it without ``__pycache__`` (the ``python3.11`` build method's layer, what SAM made
before). The function folders are copied without ``__pycache__`` (SAM copies them so),
``PYTHONDONTWRITEBYTECODE`` is set, and the environment holds the template's global variables
(``PYDANTIC_DISABLE_PLUGINS`` among them).

The figure is CPU time (``time.process_time`` in the child, the interpreter's own start-up left out), a
ratio to ``import boto3`` measured in the same interpreter: each child times ``import boto3``, then
``import app`` (together: the modules ``import app`` loads, boto3 among them), so what slows a whole child
(other processes on a shared machine) slows both and cancels out of the ratio. Every round runs each child
once, in a shuffled order (seeded); the figure is the median of the rounds' ratios, printed with their
quartiles.

``python -m deployguard_local.cold_start [--repeats N] [--json] [--without-bytecode] [--before TREE]`` prints
the table; ``--before`` measures another tree (an export of main, say) with the same recipe, interleaved.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "build" / "cold-imports"
DEFAULT_REPEATS = 21
# what the Lambda runtime ships (a copy in /opt/python would replace the runtime's under its boto3)
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py"})
LAYER_PACKAGES = frozenset({"deployguard", "pydantic", "aws_lambda_powertools", "yaml", "requests"})
UNCHECKED_HASH = 0b01  # the pyc flags of ``--invalidation-mode unchecked-hash``
LAZY_MARK = "# made lazy by layers/deployguard/lazy_package_init.py"
LAZY_INITS = (  # the layer Makefile's LAZY_INITS
    "aws_lambda_powertools/event_handler/__init__.py",
    "aws_lambda_powertools/utilities/data_classes/__init__.py",
)


class LayerBuildError(RuntimeError):
    """The layer's recipe failed, or what it built is not what Lambda must get."""


def make_layer(tree: Path, out: Path, target: str = "build-DeployGuardLayer") -> Path:
    """``target`` of ``tree``'s own layer recipe (its ``layers/deployguard/Makefile``) into ``out``; returns its
    ``python`` folder (/opt/python). ``layer-package`` is the offline part after pip."""
    command = ["make", "-s", "-C", str(tree / "layers" / "deployguard"), target, f"ARTIFACTS_DIR={out}",
               f"PYTHON={sys.executable}"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise LayerBuildError(f"make {target} failed: {done.stderr[-2000:]}")
    return out / "python"


def layer_faults(python: Path, packages: frozenset[str] = LAYER_PACKAGES) -> list[str]:
    """What is wrong with a built layer's ``python`` folder (none: an empty list): a package missing, a copy of
    what the runtime ships, a Powertools package ``__init__`` not made lazy (``LAZY_INITS``), a module
    without bytecode that Python 3.11 uses whatever the files' times (``/opt`` is read-only, a zip keeps
    times to 2 s)."""
    shipped = {p.name for p in python.iterdir()}
    faults = [f"{name} is missing" for name in sorted(packages - shipped)]
    faults += [f"{name} is shipped (the runtime has it)" for name in sorted(RUNTIME_PROVIDED & shipped)]
    for init in LAZY_INITS if "aws_lambda_powertools" in packages else ():
        if LAZY_MARK not in (python / init).read_text(encoding="utf-8"):
            faults.append(f"{init} imports every module of its package (not made lazy)")
    for source in sorted(p for p in python.rglob("*.py") if "__pycache__" not in p.parts):
        compiled = Path(importlib.util.cache_from_source(str(source)))
        header = compiled.read_bytes()[:8] if compiled.is_file() else b""
        if header[:4] != importlib.util.MAGIC_NUMBER or int.from_bytes(header[4:8], "little") != UNCHECKED_HASH:
            faults.append(f"{source.relative_to(python)} has no unchecked-hash bytecode of this Python")
    return faults


def build_layer(tree: Path, out: Path) -> Path:
    """The layer of ``tree`` built once by its own recipe into ``out``; returns its ``python`` folder. This
    tree's layer is checked (:func:`layer_faults`); another tree's (``--before``) is measured as it is."""
    python = make_layer(tree, out)
    faults = layer_faults(python) if tree.resolve() == ROOT else []
    if faults:
        raise LayerBuildError(f"the layer built from {tree} is wrong: {'; '.join(faults[:20])}")
    return python


def without_bytecode(python: Path, out: Path) -> Path:
    """A copy of a built layer without ``__pycache__`` (the ``python3.11`` build method's layer)."""
    target = out / "python"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(python, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


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


def run_in_function(code: str, path: list[Path], env: dict[str, str] | None = None, *options: str) -> str:
    """The last line ``code`` prints in a fresh interpreter with ``path`` first on ``sys.path`` (Lambda's: the
    function's folder, then the layer), in ``env`` (default :func:`function_environment`), run from ``path[0]``."""
    env = (function_environment() if env is None else env) | {"PYTHONPATH": os.pathsep.join(map(str, path))}
    done = subprocess.run([sys.executable, *options, "-c", code], capture_output=True, text=True, env=env,
                          cwd=path[0], timeout=120)  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"{code} failed: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def cpu_ms(codes: list[str], path: list[Path], env: dict[str, str]) -> list[float]:
    """CPU milliseconds of each of ``codes`` run one after the other in one fresh interpreter with ``path``
    first on ``sys.path``."""
    timed = "import time; t = []\n" + "".join(
        f"s = time.process_time(); {code}; t.append(time.process_time() - s)\n" for code in codes
    )
    return [float(x) * 1000 for x in run_in_function(timed + "print(*t)", path, env).split()]


def imports_boto3(folder: Path, layer: Path, env: dict[str, str]) -> bool:
    """Whether ``import app`` imports boto3 (every handler needs it by its first AWS call)."""
    return run_in_function("import sys, app; print('boto3' in sys.modules)", [folder, layer], env) == "True"


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return q1, median, q3


def measure(
    trees: dict[str, Path], repeats: int = DEFAULT_REPEATS, bytecode_less: bool = False, seed: int = 12
) -> dict[str, Any]:
    """For each tree (a name and its root folder) and layer variant (``compiled``, and ``without_bytecode`` if
    asked), ``repeats`` rounds, each of every measurement once in a shuffled order. A measurement is one fresh
    interpreter that times ``import boto3``, then ``import app``: the two together import what ``import app``
    imports as Lambda runs it (a handler's import takes boto3; one that leaves it to its first AWS call gets
    it), and their ratio to the ``import boto3`` of the same interpreter leaves out what slows a whole run
    (other processes on the cores). Per handler: the median CPU ms and the median and quartiles of the
    ratios. A handler whose import leaves boto3 out is also timed alone (``ms``, ``ratio`` against the
    median ``import boto3`` of its round); its figure with boto3 is ``with_boto3_ms``, ``with_boto3_ratio``."""
    env = function_environment()
    setups = {}  # (tree, variant) -> (layer, function folders, the handlers whose import takes boto3)
    for tree, root in trees.items():
        folders = function_folders(root, WORK / tree / "functions")
        compiled = build_layer(root, WORK / tree / "compiled")
        layers = {"compiled": compiled}
        if bytecode_less:
            layers["without_bytecode"] = without_bytecode(compiled, WORK / tree / "without_bytecode")
        for variant, layer in layers.items():
            takes_boto3 = {name for name, folder in folders.items() if imports_boto3(folder, layer, env)}
            setups[(tree, variant)] = (layer, folders, takes_boto3)
    runs: list[tuple[tuple[str, str, str], list[str], list[Path]]] = []  # (tree, variant, what), codes, path
    for (tree, variant), (layer, folders, takes_boto3) in setups.items():
        for name, folder in folders.items():
            runs.append(((tree, variant, name), ["import boto3", "import app"], [folder, layer]))
            if name not in takes_boto3:
                runs.append(((tree, variant, name + " alone"), ["import app"], [folder, layer]))
    order = random.Random(seed)
    rounds: list[dict[tuple[str, str, str], list[float]]] = []
    for _ in range(repeats):
        order.shuffle(runs)
        rounds.append({key: cpu_ms(codes, path, env) for key, codes, path in runs})

    def figures(values: list[float], ratios: list[float]) -> dict[str, float]:
        q1, ratio, q3 = _quartiles(ratios)
        return {"ms": round(statistics.median(values), 1), "ratio": round(ratio, 3),
                "ratio_q1": round(q1, 3), "ratio_q3": round(q3, 3)}  # fmt: skip

    result: dict[str, Any] = {tree: {} for tree in trees}
    for (tree, variant), (_, folders, takes_boto3) in setups.items():
        paired = {name: [r[(tree, variant, name)] for r in rounds] for name in folders}
        # each round's import boto3: the median of its interpreters' (boto3 is the same in every tree)
        boto3 = [statistics.median(r[k][0] for k in r if k[1] == variant and len(r[k]) == 2) for r in rounds]
        handlers: dict[str, dict[str, Any]] = {}
        for name in folders:
            both = figures([b + a for b, a in paired[name]], [(b + a) / b for b, a in paired[name]])
            if name in takes_boto3:
                handlers[name] = {**both, "imports_boto3": True}
            else:
                alone = [r[(tree, variant, name + " alone")][0] for r in rounds]
                with_boto3 = {f"with_boto3_{k}": v for k, v in both.items()}
                ratios = [a / b for a, b in zip(alone, boto3, strict=True)]
                handlers[name] = {**figures(alone, ratios), "imports_boto3": False, **with_boto3}
        result[tree][variant] = {"boto3_ms": round(statistics.median(boto3), 1), "handlers": handlers}
    return result


def cold_imports(repeats: int = DEFAULT_REPEATS, bytecode_less: bool = False) -> dict[str, Any]:
    """This tree's figures: the top-level ``boto3_ms`` and ``handlers`` are the shipped (compiled) layer's,
    ``without_bytecode`` (if asked) the same with a layer without bytecode."""
    figures = measure({"this": ROOT}, repeats, bytecode_less)["this"]
    extra = {"without_bytecode": figures["without_bytecode"]} if bytecode_less else {}
    return {**figures["compiled"], **extra, "repeats": repeats}


def table(result: dict[str, Any], repeats: int) -> str:
    """Per tree and layer variant, each handler's median CPU ms and ratio with the quartiles of the rounds'."""
    lines = [f"cold import: CPU ms (median of {repeats} rounds) and ratio to `import boto3` "
             "(median of the rounds' ratios, [quartiles])"]  # fmt: skip
    for tree, variants in result.items():
        for variant, figures in variants.items():
            lines.append(f"{tree} / {variant} layer")
            for name, f in figures["handlers"].items():
                note = "" if f["imports_boto3"] else (
                    f"  (boto3 at its first AWS call; with it {f['with_boto3_ms']:.1f} ms {f['with_boto3_ratio']:.2f}x"
                    f" [{f['with_boto3_ratio_q1']:.2f}-{f['with_boto3_ratio_q3']:.2f}])")  # fmt: skip
                lines.append(f"  {name:<22} {f['ms']:>7.1f} ms {f['ratio']:>6.2f}x"
                             f" [{f['ratio_q1']:.2f}-{f['ratio_q3']:.2f}]{note}")  # fmt: skip
            lines.append(f"  {'import boto3':<22} {figures['boto3_ms']:>7.1f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployguard_local.cold_start", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="rounds (default %(default)s)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--without-bytecode", action="store_true", help="also a copy of the layer without bytecode")
    parser.add_argument("--before", type=Path, help="another tree (e.g. an export of main), measured interleaved")
    args = parser.parse_args(argv)
    trees = {"before": args.before.resolve(), "this": ROOT} if args.before else {"this": ROOT}
    result = measure(trees, args.repeats, args.without_bytecode)
    print(json.dumps(result, indent=2) if args.json else table(result, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
