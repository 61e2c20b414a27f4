"""Run the docstring examples of every thoracic module (they are documentation that must work)."""

import doctest
import importlib
import pkgutil

import pytest

import thoracic

# modules that need the `train` extra or are entry points
SKIP = {"thoracic.__main__"}
NEEDS_TORCH = ("training", "train_", "yolov5_import", "unet")


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(thoracic.__path__, prefix="thoracic."):
        if info.name in SKIP or any(part in info.name for part in NEEDS_TORCH):
            continue
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_the_examples_are_found():
    attempted = sum(
        doctest.testmod(importlib.import_module(name), report=False).attempted for name in _modules()
    )
    assert attempted >= 20


#: The data-set modules, whose examples also pass without NORMALIZE_WHITESPACE.
DATA_SET_MODULES = [
    "thoracic.data", "thoracic.data.coco", "thoracic.data.csvtable", "thoracic.batch.export", "thoracic.data.fusion",
    "thoracic.data.nih", "thoracic.data.splits", "thoracic.data.stats", "thoracic.data.vinbigdata",
    "thoracic.boxes", "thoracic.cli.dataset",
]


def test_data_set_examples_without_whitespace_normalization():
    for name in DATA_SET_MODULES:
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, name
    from thoracic.data import tables

    assert doctest.testmod(tables).failed == 0
