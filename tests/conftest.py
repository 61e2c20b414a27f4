from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SAMPLES = ROOT / "src" / "thoracic" / "samples"


def _require(module: str):
    """Import an optional test dependency: skip without it, but fail in CI (CI=true)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{module} is required in CI but cannot be imported")
        pytest.skip(f"{module} is not installed")


@pytest.fixture
def require():
    return _require


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


# Deterministic property tests: the same examples on every run and machine.
from hypothesis import settings as _hsettings  # noqa: E402

_hsettings.register_profile("thoracic", derandomize=True, deadline=None, print_blob=True)
_hsettings.load_profile("thoracic")
