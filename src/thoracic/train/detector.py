"""Train a YOLOv5u/v8/11 detector with ultralytics, offline, resumable (the ``train`` extra).

:func:`train_detector` builds the model from a YAML (never a weights *name*: nothing is
downloaded), optionally imports an original-YOLOv5 checkpoint (transfer learning, see
:mod:`thoracic.train.yolov5_import`) or starts from an ultralytics ``.pt``, and trains on a YOLO
data set written by ``thoracic dataset export`` (``data_<fold>.yaml``). The resolved
configuration is written to ``<out>/<name>/thoracic_train.json``; ultralytics writes
``weights/last.pt`` every epoch and ``best.pt`` whenever validation improves (``epoch<N>.pt``
every ``save_period`` epochs only when asked), and ``resume=True`` continues an interrupted
run from ``last.pt``. :func:`run_state` tells an interrupted run from a finished one *before*
ultralytics is called: resuming a finished run trains nothing and says so (ultralytics itself
would start a new training on its default data set, ``coco8.yaml``, and try to download it).

A ``pretrained`` file is looked up by sha256 in :mod:`thoracic.train.weights`; the run records
which known weights it started from, and logs a warning when the file is none of them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from thoracic._version import __version__
from thoracic.errors import ConfigError, CorruptFileError

__all__ = ["DetectorTrainConfig", "RunState", "pretrained_identity", "run_state", "train_detector"]

log = logging.getLogger(__name__)

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
    save_period:
        Also write ``weights/epoch<N>.pt`` every N epochs; below 1 (the default, ``-1``): only
        ``best.pt`` and ``last.pt``.
    epochs, imgsz, batch, patience, seed, threads, close_mosaic, fliplr, mosaic, lr0, optimizer, warmup_epochs, nbs, freeze:
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
    intensity_aug:
        Strength of the grey-level augmentation for other devices' films (window, gamma,
        contrast, CLAHE on some images, blur, noise, JPEG quality; :mod:`thoracic.train.detector_aug`),
        in ``[0, 2]``: 1 the default ranges, 0 (the default) off, so earlier runs' commands train
        what they trained.
    degrees:
        ultralytics' random rotation in degrees (its other geometry, scale 0.5, translate 0.1 and
        flips, is on anyway); 0 (the default) none, 5 a modest tilt.
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
    save_period: int = -1
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
    intensity_aug: float = 0.0
    degrees: float = 0.0

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
        from thoracic.train.detector_aug import intensity_config  # numpy and cv2 only

        intensity_config(self.intensity_aug)  # raises ConfigError outside [0, 2]
        if not 0.0 <= self.degrees <= 45.0:
            raise ConfigError(f"degrees must lie in [0, 45], got {self.degrees}")

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


def pretrained_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"sha256", "known_weights"}`` of a starting-weights file (:mod:`thoracic.train.weights`).

    Logs a warning when the file is none of the known weights: allowed (a researcher's own
    checkpoint), but its origin and licence are not checked.
    """
    from thoracic.train.weights import check_weights

    check = check_weights(path)
    if check.known is None:
        log.warning("%s", check.describe())
    return {"sha256": check.sha256, "known_weights": check.known.name if check.known else None}


def _initial_weights(cfg: DetectorTrainConfig, nc: int) -> tuple[str, dict[str, Any]]:
    """The ``.pt`` ultralytics starts from, and what was imported."""
    import torch

    if not cfg.pretrained:
        return cfg.model_yaml, {"pretrained": None}
    known = pretrained_identity(cfg.pretrained)
    if not _is_original_yolov5(cfg.pretrained):
        return cfg.pretrained, {"pretrained": cfg.pretrained, "format": "ultralytics", **known}
    from thoracic.train.yolov5_import import import_yolov5

    model, report = import_yolov5(cfg.pretrained, cfg.model_yaml, nc=nc)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    init = cfg.run_dir / "init_imported.pt"
    torch.save({"model": model, "train_args": {}, "date": None, "version": None}, init)
    info = {"pretrained": cfg.pretrained, "format": "original-yolov5", **known,
            "matched": report.n_matched, "total": report.total, "summary": report.summary()}
    return str(init), info


def _nc_of(data_yaml: str) -> int:
    for line in Path(data_yaml).read_text().splitlines():
        if line.startswith("nc:"):
            return int(line.split(":", 1)[1])
    raise ConfigError(f"{data_yaml} has no 'nc:' line", path=data_yaml)


@dataclass(frozen=True)
class RunState:
    """Where a run stands, read from its ``weights/last.pt`` (see :func:`run_state`).

    Attributes
    ----------
    state:
        ``"missing"`` (no ``last.pt``), ``"interrupted"`` (``last.pt`` holds the optimizer and the
        epoch it stopped after: resumable) or ``"finished"`` (ultralytics' closing step stripped
        ``last.pt``, marking it ``epoch=-1`` with no optimizer, or every epoch was trained).
    epoch:
        Epochs completed according to ``last.pt`` (``None`` when finished or missing).
    epochs:
        The epochs the run was set to train (``None`` when unknown).
    """

    run: Path
    state: str
    epoch: int | None = None
    epochs: int | None = None

    @property
    def last(self) -> Path:
        return self.run / "weights" / "last.pt"

    @property
    def best(self) -> Path:
        return self.run / "weights" / "best.pt"


def run_state(run: str | os.PathLike[str]) -> RunState:
    """Read ``run/weights/last.pt`` and say whether the run can be resumed (``train`` extra).

    Raises
    ------
    CorruptFileError
        ``last.pt`` is not an ultralytics training checkpoint.
    """
    run = Path(run)
    last = run / "weights" / "last.pt"
    if not last.is_file():
        return RunState(run, "missing")
    from thoracic.train._ultralytics import load_torch, load_ultralytics

    load_ultralytics("resuming a detector run")  # the checkpoint pickles ultralytics' classes
    torch = load_torch("resuming a detector run")
    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
    except Exception as err:  # any unpickling failure means the same to the user
        raise CorruptFileError(f"not an ultralytics training checkpoint ({type(err).__name__})", path=last) from err
    if not isinstance(ckpt, Mapping) or "model" not in ckpt:
        raise CorruptFileError("not an ultralytics training checkpoint (no 'model' inside)", path=last)
    args = ckpt.get("train_args") or {}
    epochs = int(args["epochs"]) if isinstance(args, Mapping) and args.get("epochs") else None
    epoch = int(ckpt.get("epoch", -1) if ckpt.get("epoch") is not None else -1)
    if epoch < 0 or ckpt.get("optimizer") is None or (epochs is not None and epoch + 1 >= epochs):
        return RunState(run, "finished", None, epochs)
    return RunState(run, "interrupted", epoch + 1, epochs)


def _finished_summary(state: RunState) -> dict[str, Any]:
    """The summary of a finished run that was asked to resume (nothing is trained)."""
    summary: dict[str, Any] = {}
    saved = state.run / "thoracic_summary.json"
    if saved.is_file():
        try:
            summary = dict(json.loads(saved.read_text()))
        except (ValueError, TypeError):
            summary = {}
    epochs = summary.get("epochs", state.epochs)
    trained = f" ({epochs} epoch{'' if epochs == 1 else 's'})" if epochs else ""
    summary.update({
        "run": str(state.run), "best": str(state.best), "last": str(state.last), "already_finished": True,
        "message": (f"run {state.run} is already finished{trained}: nothing to "
                    f"resume. Its best weights are {state.best}. To train again, leave out --resume "
                    f"(a new --name keeps this run)."),
    })
    return summary


def train_detector(
    cfg: DetectorTrainConfig,
    *,
    on_epoch: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume) a detector; returns a summary (paths, epochs, seconds, metrics).

    With ``cfg.resume`` on a finished run nothing is trained: the summary is the run's own, with
    ``already_finished=True`` and a ``message`` naming the run and its ``best.pt``.

    Raises
    ------
    MissingDependencyError
        torch/ultralytics are missing (``pip install 'thoracic[train]'``).
    ConfigError
        Bad settings, or ``resume`` without a ``last.pt``.
    CorruptFileError
        ``resume`` and ``last.pt`` is not an ultralytics training checkpoint.
    """
    from thoracic.train._ultralytics import load_ultralytics

    load_ultralytics("detector training", threads=cfg.threads)
    from ultralytics import YOLO

    start = time.time()
    run = cfg.run_dir
    if cfg.resume:
        state = run_state(run)
        if state.state == "missing":
            raise ConfigError(f"nothing to resume: {state.last} does not exist (is --out {cfg.out} --name {cfg.name} "
                              f"the run you mean? Without --resume a new run starts)")
        if state.state == "finished":
            return _finished_summary(state)
        model = YOLO(str(state.last))
        info: dict[str, Any] = {"resumed_from": str(state.last), "resumed_after_epoch": state.epoch}
        kwargs: dict[str, Any] = {"resume": True}
        saved = _saved_config(run)  # the interrupted run's own augmentation, not this call's
        aug, aug_seed = float(saved.get("intensity_aug", 0.0)), int(saved.get("seed", cfg.seed))
    else:
        weights, info = _initial_weights(cfg, _nc_of(cfg.data))
        model = YOLO(weights) if weights.endswith(".pt") else YOLO(weights, task="detect")
        kwargs = {
            "data": str(Path(cfg.data).resolve()), "epochs": cfg.epochs, "imgsz": cfg.imgsz, "batch": cfg.batch,
            "patience": cfg.patience, "save_period": cfg.save_period, "seed": cfg.seed, "deterministic": True,
            "close_mosaic": cfg.close_mosaic, "fliplr": cfg.fliplr, "mosaic": cfg.mosaic, "lr0": cfg.lr0,
            "optimizer": cfg.optimizer, "warmup_epochs": cfg.warmup_epochs, "nbs": cfg.nbs, "freeze": cfg.freeze or None, "device": cfg.device, "workers": cfg.loader_workers, "project": str(Path(cfg.out).resolve()),
            "name": cfg.name, "exist_ok": True, "plots": cfg.plots, "verbose": False, "amp": False,
            "hsv_h": 0.0, "hsv_s": 0.0,  # grayscale radiographs
            "degrees": cfg.degrees,
            "cache": cfg.cache or False,
        }
        aug, aug_seed = cfg.intensity_aug, cfg.seed
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
    if aug > 0:
        from thoracic.train.detector_aug import detector_trainer

        model.train(trainer=detector_trainer(aug, aug_seed), **kwargs)
    else:
        model.train(**kwargs)
    trainer: Any = model.trainer
    summary = {
        "run": str(run), "best": str(trainer.best), "last": str(trainer.last), "epochs": int(trainer.epochs),
        "seconds": round(time.time() - start, 1), "metrics": {k: float(v) for k, v in (trainer.metrics or {}).items()},
        "init": info, "intensity_aug": aug, "intensity_aug_in_pipeline": _has_intensity_step(trainer),
    }
    (run / "thoracic_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def _has_intensity_step(trainer: Any) -> bool:
    """Whether the training images went through :class:`~thoracic.train.detector_aug.IntensityAugment`."""
    dataset = getattr(getattr(trainer, "train_loader", None), "dataset", None)
    steps = getattr(getattr(dataset, "transforms", None), "transforms", None) or []
    return any(type(t).__name__ == "IntensityAugment" for t in steps)


def _saved_config(run: Path) -> dict[str, Any]:
    """The ``config`` of a run's ``thoracic_train.json`` (empty when missing or unreadable)."""
    try:
        return dict(json.loads((run / "thoracic_train.json").read_text()).get("config") or {})
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _drop_raytune(trainer: Any) -> None:
    """Remove ultralytics' Ray Tune reporter from a trainer that is not inside a Tune session.

    ultralytics adds it whenever ``ray`` is importable (the ``ray`` extra installs it), and outside
    a Tune session it only warns (``get_trial_id is meant to ...``) at every epoch.
    """
    for event, fns in trainer.callbacks.items():
        trainer.callbacks[event] = [f for f in fns if getattr(f, "__module__", "") != "ultralytics.utils.callbacks.raytune"]
