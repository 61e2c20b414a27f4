import importlib

import pytest

MODULES = [
    "thoracic.data", "thoracic.data.coco", "thoracic.data.csvtable", "thoracic.batch.export", "thoracic.data.fusion",
    "thoracic.data.nih", "thoracic.data.splits", "thoracic.data.stats", "thoracic.data.vinbigdata",
    "thoracic.boxes", "thoracic.boxes", "thoracic.cli.dataset",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_importable(name):
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__)
    for attr in module.__all__:
        assert hasattr(module, attr), f"{name}.{attr}"


def test_doctests():
    import doctest

    for name in MODULES:
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, name
    from thoracic.data import tables

    assert doctest.testmod(tables).failed == 0
