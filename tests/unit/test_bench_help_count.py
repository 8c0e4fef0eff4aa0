"""``bench --help`` states the corpus size the default run really has (it said 520 for v2's 720)."""

from __future__ import annotations

import importlib.util
import re
import sys

import pytest

from deployguard_local.bench import build_parser, shared_dir


def test_the_help_counts_the_shared_corpus_of_the_default_run() -> None:
    text = build_parser().format_help()
    match = re.search(r"default 40: (\d+) in all, (\d+) families", " ".join(text.split()))
    assert match is not None, text
    path = shared_dir() / "bench" / "canarygen.py"
    if not path.is_file():
        pytest.skip("the shared benchmark (../shared) is absent")
    spec = importlib.util.spec_from_file_location("canarygen_help", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    families = len(module.FAMILIES)
    assert (int(match.group(1)), int(match.group(2))) == (40 * families, families)
