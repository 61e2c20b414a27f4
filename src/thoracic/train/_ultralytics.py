"""Import torch and ultralytics offline, quietly and with 2 threads (the ``train`` extra).

Everything in thoracic that needs ultralytics goes through :func:`load_ultralytics`, which sets
the switches of ``../shared/ULTRALYTICS.md`` *before* the first import: no DNS probe, no PyPI
check, no analytics, no auto-install, no font download, settings in a folder thoracic owns.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

from thoracic.errors import MissingDependencyError

__all__ = ["config_dir", "load_torch", "load_ultralytics"]

_ENV = {
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "false",
    "YOLO_VERBOSE": "false",
    "NO_ALBUMENTATIONS_UPDATE": "1",
}


def config_dir() -> Path:
    """The ultralytics settings folder thoracic uses (``$YOLO_CONFIG_DIR`` if set)."""
    return Path(os.environ.get("YOLO_CONFIG_DIR") or Path(tempfile.gettempdir()) / "thoracic-ultralytics")


def _fonts(cfg: Path) -> None:
    """Put a local TTF where ultralytics looks for Arial, so plotting never downloads one."""
    target = cfg / "Ultralytics"
    target.mkdir(parents=True, exist_ok=True)
    wanted = [target / "Arial.ttf", target / "Arial.Unicode.ttf"]
    if all(p.exists() for p in wanted):
        return
    try:
        import matplotlib

        src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    except ImportError:  # pragma: no cover - matplotlib comes with ultralytics
        return
    for p in wanted:
        if not p.exists() and src.is_file():
            shutil.copyfile(src, p)


def load_torch(feature: str = "training") -> ModuleType:
    """``import torch`` or raise :class:`MissingDependencyError` naming the ``train`` extra."""
    try:
        import torch
    except ImportError as err:
        raise MissingDependencyError.for_feature(feature, "torch", "train") from err
    return torch


_threads: int | None = None


def load_ultralytics(feature: str = "training", *, threads: int | None = None) -> ModuleType:
    """Import ``ultralytics`` fully offline with ``threads`` torch threads.

    ``threads=None`` keeps the number an earlier call set (2 the first time). On a machine shared
    with other CPU-bound jobs use 1: with more threads than free cores, torch's OpenMP threads
    wait for each other (measured here: 50x slower per image with 2 threads while 5 other
    training jobs ran on 2 cores; 1.7x faster with 2 threads on an idle machine).

    Raises
    ------
    MissingDependencyError
        torch or ultralytics is not installed (``pip install 'thoracic[train]'``).
    """
    for key, value in _ENV.items():
        os.environ.setdefault(key, value)
    cfg = config_dir()
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cfg))
    cfg.mkdir(parents=True, exist_ok=True)
    _fonts(cfg)
    torch = load_torch(feature)
    try:
        import ultralytics
        from ultralytics.utils import SETTINGS, torch_utils
    except ImportError as err:
        raise MissingDependencyError.for_feature(feature, "ultralytics", "train") from err
    if SETTINGS.get("sync", False):
        SETTINGS.update({"sync": False})
    global _threads
    if threads is not None or _threads is None:
        _threads = int(threads or 2)
        torch_utils.NUM_THREADS = _threads
        torch.set_num_threads(_threads)
    return ultralytics
