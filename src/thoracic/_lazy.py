"""Package attributes imported on first use (PEP 562).

A package's ``__init__`` names what users import from it (``from thoracic import Predictor``), but
importing one module of the package (``thoracic.inference.predictor``) runs that ``__init__``
first: eager imports there would load every sibling (the batch pipeline, the analyzer, drawing)
into a process that needs none of them, and a cold start pays for it. With :func:`lazy` the
``__init__`` lists where each name lives and imports it the first time it is asked for; type
checkers read the same names from an ``if TYPE_CHECKING:`` block of ordinary imports.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy"]


def lazy(package: str, where: Mapping[str, Sequence[str]]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``where`` maps a module to the names it gives.

    A name is imported from its module on first access and then kept on the package; a
    subpackage or module of the package (``thoracic.anatomy``) is imported when asked for.
    """
    owner = {name: module for module, names in where.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = owner.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module), name)
        elif not name.startswith("__"):
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as err:
                if err.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(owner))

    return __getattr__, __dir__
