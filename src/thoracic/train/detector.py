"""Train a YOLOv5u/v8/11 detector with ultralytics, offline, resumable (the ``train`` extra).

:func:`train_detector` builds the model from a YAML (never a weights *name*: nothing is
downloaded), optionally imports an original-YOLOv5 checkpoint (transfer learning, see
:mod:`thoracic.train.yolov5_import`) or starts from an ultralytics ``.pt``, and trains on a YOLO
data set written by ``thoracic dataset export`` (``data_<fold>.yaml``). The resolved
configuration is written to ``<out>/<name>/thoracic_train.json``; ultralytics writes
``weights/last.pt`` every epoch, ``best.pt`` and ``epoch<N>.pt`` every ``save_period`` epochs, and
``resume=True`` continues an interrupted run from ``last.pt``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from thoracic._version import __version__
from thoracic.errors import ConfigError

__all__ = ["DetectorTrainConfig", "train_detector"]

_MODELS = ("yolov5n", "yolov5s", "yolov5m", "yolov8n", "yolov8s", "yolo11n", "yolo11s")


@dataclass(frozen=True)
class DetectorTrainConfig:
    """Settings of one detector training run (all written next to its weights).

    Attributes
    ----------
    data:
        An ultralytics data YAML from ``thoracic dataset export`` (e.g. ``data_0.yaml``: fold 0 validates).
    out, name:
        Runs folder and run name: weights go to ``out/name/weights``.
    model:
        Architecture: ``yolov5n`` (default), ``yolov5s``, ``yolov5m``, ``yolov8n``, ...; or a model YAML path.
    pretrained:
        ``""`` (from scratch), an original-YOLOv5 checkpoint (imported, layers 0-23) or an
        ultralytics ``.pt`` (its matching tensors are transferred).
    epochs, imgsz, batch, patience, save_period, seed, threads, close_mosaic, fliplr, mosaic, lr0, optimizer, warmup_epochs, nbs, freeze:
        Passed to ultralytics (``threads`` sets its torch threads: 1 on a CPU shared with other jobs, 2 on an idle 2-core machine).
        ``nbs`` (nominal batch size) equal to ``batch`` makes every batch an optimizer step,
        which matters for a few epochs of a small data set. ``freeze=10`` keeps the backbone
        (layers 0-9, e.g. imported COCO weights) fixed: about a third less compute per image.
    resume:
        Continue ``out/name/weights/last.pt``.
    workers:
        Data-loader processes. ``None``: 0 on the CPU (ultralytics forces it there, and loader
        processes only compete with the training threads on a small machine), 8 (at most the
        cores) on a CUDA device, where augmentation on one process starves the GPU.
    cache:
        ``""`` (read images each epoch), ``"ram"`` or ``"disk"`` (ultralytics' image cache).
    hours:
        A wall-clock budget in hours (ultralytics' ``time``): after the first epoch the number of
        epochs is set to what fits, and the learning-rate schedule follows it; ``None``: ``epochs``.
    """

    data: str
    out: str = "runs/detector"
    name: str = "train"
    model: str = "yolov5n"
    pretrained: str = ""
    epochs: int = 20
    imgsz: int = 512
    batch: int = 16
    patience: int = 100
    save_period: int = 1
    seed: int = 0
    threads: int = 1
    close_mosaic: int = 5
    fliplr: float = 0.5
    mosaic: float = 1.0
    lr0: float = 0.01
    warmup_epochs: float = 1.0
    freeze: int = 0
    nbs: int = 16
    optimizer: str = "auto"
    device: str = "cpu"
    resume: bool = False
    plots: bool = False
    workers: int | None = None
    cache: str = ""
    hours: float | None = None

    def __post_init__(self) -> None:
        if not self.model.endswith((".yaml", ".yml")) and self.model not in _MODELS:
            raise ConfigError.unknown("detector model", self.model, _MODELS)
        if self.epochs < 1 or self.imgsz < 32 or self.imgsz % 32 or self.batch < 1:
            raise ConfigError("epochs >= 1, batch >= 1 and imgsz a multiple of 32 are required")
        if not self.resume and not Path(self.data).is_file():
            raise ConfigError(f"data set YAML {self.data} does not exist (write one with `thoracic dataset export`)")
        if self.pretrained and not Path(self.pretrained).is_file():
            raise ConfigError(f"pretrained checkpoint {self.pretrained} does not exist")
        if self.workers is not None and self.workers < 0:
            raise ConfigError("workers must be >= 0")
        if self.cache not in ("", "ram", "disk"):
            raise ConfigError.unknown("image cache", self.cache, ("", "ram", "disk"))
        if self.hours is not None and not self.hours > 0:
            raise ConfigError("hours must be > 0")

    @property
    def loader_workers(self) -> int:
        """Data-loader processes for this device (see ``workers``)."""
        if self.workers is not None:
            return self.workers
        if str(self.device).lower() in ("cpu", "", "mps"):
            return 0
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(8, cores))

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.name

    @property
    def model_yaml(self) -> str:
        return self.model if self.model.endswith((".yaml", ".yml")) else f"{self.model}.yaml"


def _is_original_yolov5(path: str) -> bool:
    from thoracic.train.yolov5_import import load_original_checkpoint

    try:
        ckpt = load_original_checkpoint(path)
    except Exception:  # noqa: BLE001 - anything else is an ultralytics checkpoint
        return False
    return type(ckpt.get("model")).__module__.startswith("thoracic.train.yolov5_import")


def _initial_weights(cfg: DetectorTrainConfig, nc: int) -> tuple[str, dict[str, Any]]:
    """The ``.pt`` ultralytics starts from, and what was imported."""
    import torch

    if not cfg.pretrained:
        return cfg.model_yaml, {"pretrained": None}
    if not _is_original_yolov5(cfg.pretrained):
        return cfg.pretrained, {"pretrained": cfg.pretrained, "format": "ultralytics"}
    from thoracic.train.yolov5_import import import_yolov5

    model, report = import_yolov5(cfg.pretrained, cfg.model_yaml, nc=nc)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    init = cfg.run_dir / "init_imported.pt"
    torch.save({"model": model, "train_args": {}, "date": None, "version": None}, init)
    info = {"pretrained": cfg.pretrained, "format": "original-yolov5", "sha256": report.sha256,
            "matched": report.n_matched, "total": report.total, "summary": report.summary()}
    return str(init), info


def _nc_of(data_yaml: str) -> int:
    for line in Path(data_yaml).read_text().splitlines():
        if line.startswith("nc:"):
            return int(line.split(":", 1)[1])
    raise ConfigError(f"{data_yaml} has no 'nc:' line", path=data_yaml)


def train_detector(
    cfg: DetectorTrainConfig,
    *,
    on_epoch: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume) a detector; returns a summary (paths, epochs, seconds, metrics).

    Raises
    ------
    MissingDependencyError
        torch/ultralytics are missing (``pip install 'thoracic[train]'``).
    ConfigError
        Bad settings, or ``resume`` without a ``last.pt``.
    """
    from thoracic.train._ultralytics import load_ultralytics

    load_ultralytics("detector training", threads=cfg.threads)
    from ultralytics import YOLO

    start = time.time()
    run = cfg.run_dir
    if cfg.resume:
        last = run / "weights" / "last.pt"
        if not last.is_file():
            raise ConfigError(f"nothing to resume: {last} does not exist")
        model = YOLO(str(last))
        info: dict[str, Any] = {"resumed_from": str(last)}
        kwargs: dict[str, Any] = {"resume": True}
    else:
        weights, info = _initial_weights(cfg, _nc_of(cfg.data))
        model = YOLO(weights) if weights.endswith(".pt") else YOLO(weights, task="detect")
        kwargs = dict(
            data=str(Path(cfg.data).resolve()), epochs=cfg.epochs, imgsz=cfg.imgsz, batch=cfg.batch,
            patience=cfg.patience, save_period=cfg.save_period, seed=cfg.seed, deterministic=True,
            close_mosaic=cfg.close_mosaic, fliplr=cfg.fliplr, mosaic=cfg.mosaic, lr0=cfg.lr0,
            optimizer=cfg.optimizer, warmup_epochs=cfg.warmup_epochs, nbs=cfg.nbs, freeze=cfg.freeze or None, device=cfg.device, workers=cfg.loader_workers, project=str(Path(cfg.out).resolve()),
            name=cfg.name, exist_ok=True, plots=cfg.plots, verbose=False, amp=False,
            hsv_h=0.0, hsv_s=0.0,  # grayscale radiographs
            cache=cfg.cache or False,
        )
        if cfg.hours is not None:
            kwargs["time"] = cfg.hours
        run.mkdir(parents=True, exist_ok=True)
        resolved = {"thoracic_version": __version__, "config": asdict(cfg), "ultralytics_args": kwargs, "init": info}
        (run / "thoracic_train.json").write_text(json.dumps(resolved, indent=2, sort_keys=True) + "\n")
    batches = [0]

    def _batch(trainer: Any) -> None:
        batches[0] += 1
        (run / "progress.txt").write_text(f"epoch {int(trainer.epoch) + 1}/{int(trainer.epochs)} batch {batches[0]} "
                                          f"{time.strftime('%H:%M:%S')} {round(time.time() - start, 1)}s\n")

    model.add_callback("on_train_batch_end", _batch)
    if on_epoch is not None:
        def _cb(trainer: Any) -> None:
            final = int(trainer.epoch) + 1 > int(trainer.epochs)  # the closing validation of best.pt
            on_epoch({"epoch": min(int(trainer.epoch) + 1, int(trainer.epochs)), "epochs": int(trainer.epochs), "final": final,
                      "metrics": {k: float(v) for k, v in (trainer.metrics or {}).items()},
                      "seconds": round(time.time() - start, 1)})

        model.add_callback("on_fit_epoch_end", _cb)
    model.add_callback("on_pretrain_routine_start", _drop_raytune)
    model.train(**kwargs)
    trainer = model.trainer
    summary = {
        "run": str(run), "best": str(trainer.best), "last": str(trainer.last), "epochs": int(trainer.epochs),
        "seconds": round(time.time() - start, 1), "metrics": {k: float(v) for k, v in (trainer.metrics or {}).items()},
        "init": info,
    }
    (run / "thoracic_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def _drop_raytune(trainer: Any) -> None:
    """Remove ultralytics' Ray Tune reporter from a trainer that is not inside a Tune session.

    ultralytics adds it whenever ``ray`` is importable (the ``ray`` extra installs it), and outside
    a Tune session it only warns (``get_trial_id is meant to ...``) at every epoch.
    """
    for event, fns in trainer.callbacks.items():
        trainer.callbacks[event] = [f for f in fns if getattr(f, "__module__", "") != "ultralytics.utils.callbacks.raytune"]
