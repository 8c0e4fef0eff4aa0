"""Rewrite a package's ``__init__.py`` that only re-exports names into one that imports each on first use.

Run by the layer's Makefile on ``aws_lambda_powertools/event_handler/__init__.py`` and
``aws_lambda_powertools/utilities/data_classes/__init__.py`` (Powertools 3.37.0): the first imports every
resolver (AppSync with asyncio, Bedrock, VPC Lattice, ...), the second every event class (about thirty
modules), and Python runs a package's ``__init__`` before any of its submodules, so the console, which
uses the API Gateway resolver and its event classes only, paid for all of them at every cold start.
The rewritten file exports the same names (``__all__``, ``dir()``), each resolved from the same module
to the same object the first time it is read (PEP 562 ``__getattr__``).

The rewrite refuses (exit 2) a file with anything else than a docstring, ``from ... import`` of names
and ``__all__``, and a name of ``__all__`` that no import provides: a new Powertools whose file does more
fails the build instead of being changed. ``python lazy_package_init.py FILE...``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MARK = "# made lazy by layers/deployguard/lazy_package_init.py"

TEMPLATE = """{docstring}
{mark}
import importlib as _importlib

{eager}

__all__ = {names!r}

_FROM = {origins!r}


def __getattr__(name):
    if name not in _FROM:
        # the original's imports made its submodules attributes of the package: one is imported when asked for
        if not name.startswith("__"):
            try:
                return _importlib.import_module(f"{{__name__}}.{{name}}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{{__name__}}.{{name}}":
                    raise
        raise AttributeError(f"module {{__name__!r}} has no attribute {{name!r}}")
    value = getattr(_importlib.import_module(_FROM[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_FROM))
"""


class NotReexportsOnly(ValueError):
    """The file does more than re-export names: it is left as it is and the build fails."""


def lazy_source(source: str, filename: str = "__init__.py") -> str:
    """The lazy equivalent of ``source`` (a package ``__init__`` that only re-exports names)."""
    if MARK in source:
        return source
    tree = ast.parse(source, filename)
    origins: dict[str, str] = {}  # name -> the module it comes from (relative to the package or not)
    eager: list[str] = []
    names: list[str] | None = None
    docstring = ast.get_docstring(tree, clean=False)
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if alias.asname not in (None, alias.name) or alias.name == "*":
                    raise NotReexportsOnly(f"{filename}:{node.lineno}: renamed or star import")
                module = "." * node.level + node.module
                if alias.name == node.module.rsplit(".", 1)[-1]:
                    # a name its own submodule also has (``event_source``): importing that submodule would
                    # set the package's attribute to the module, so it stays an import at the top
                    eager.append(f"from {module} import {alias.name}")
                else:
                    origins[alias.name] = module
        elif isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__all__"]:
            names = list(ast.literal_eval(node.value))
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and node is tree.body[0]):
            raise NotReexportsOnly(f"{filename}:{node.lineno}: not a re-export ({type(node).__name__})")
    provided = set(origins) | {line.rsplit(" ", 1)[-1] for line in eager}
    if names is None or set(names) - provided:
        raise NotReexportsOnly(f"{filename}: __all__ missing or naming what no import provides")
    quoted = repr(docstring) if docstring is not None else ""
    return TEMPLATE.format(docstring=quoted, mark=MARK, eager="\n".join(eager), names=names, origins=origins)


def main(argv: list[str]) -> int:
    for path in map(Path, argv):
        try:
            path.write_text(lazy_source(path.read_text(encoding="utf-8"), str(path)), encoding="utf-8")
        except NotReexportsOnly as exc:
            print(f"lazy_package_init: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
