"""Helpers of the data-set tests: optional dependencies and the real tables from torchxrayvision."""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
META_SUBSET = FIXTURES / "vinbigdata_meta_subset.csv"
SAMPLES = HERE.parents[1] / "src" / "thoracic" / "samples"


def require_module(name: str):
    """Import an optional test dependency: skip without it, fail in CI (CI=true)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(name)


def _missing(what: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required in CI but is not installed")
    pytest.skip(f"{what} is not installed")


def txv_data(name: str) -> Path:
    """A file of ``torchxrayvision/data`` found without importing torchxrayvision (and torch)."""
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        _missing("torchxrayvision")
    for loc in spec.submodule_search_locations:  # type: ignore[union-attr]
        p = Path(loc) / "data" / name
        if p.is_file():
            return p
    _missing(f"torchxrayvision/data/{name}")
    raise AssertionError  # unreachable


def write(path: Path, text: str) -> Path:
    path.write_text(text.lstrip("\n"))
    return path
