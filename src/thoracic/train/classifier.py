"""Train the normal/abnormal classifier (the ``train`` extra).

A linear probe on the COCO-pretrained YOLOv5n backbone: the original checkpoint is imported
(:mod:`thoracic.train.yolov5_import`), its layers 0-9 are frozen, and the global averages of
the outputs of layers 4, 6 and 9 (64 + 128 + 256 channels, strides 8/16/32) are the features. A
logistic regression (L2, full-batch L-BFGS) on standardized features separates NIH "No Finding"
images from images with any finding (NIH's report labels: noisy). Standardization and the linear
layer are folded into one ``nn.Linear``, and backbone + pooling + linear + softmax are exported to
ONNX with thoracic's metadata. Validation is on one patient-grouped fold; the filter threshold
``low`` is chosen there (the highest threshold that keeps ``min_sensitivity`` of the abnormal
validation images above it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thoracic._version import __version__
from thoracic.errors import ConfigError
from thoracic.models.meta import ModelMeta
from thoracic.models.runtime import write_meta
from thoracic.preprocess.chain import Chain, get_chain

__all__ = ["ClassifierTrainConfig", "choose_low", "roc_auc", "train_classifier"]

FEATURE_LAYERS = (4, 6, 9)


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Settings of one classifier run.

    Attributes
    ----------
    images_csv:
        NIH ``images.csv`` (``image, patient_id, finding_labels``).
    images:
        Folder of the images (or of an export's 8-bit PNGs written through ``chain``).
    folds_csv:
        ``image_id, group, fold`` (``thoracic dataset split`` or an export's ``folds.csv``).
    pretrained:
        Original-YOLOv5 checkpoint whose backbone extracts features.
    out:
        Output folder: ``classifier.onnx``, ``features.npz`` (cache), ``summary.json``.
    val_fold:
        The validation fold.
    chain:
        Chain that produced ``images`` (recorded; ``letterbox(imgsz)`` is appended for the model).
    imgsz:
        Classifier input size.
    l2:
        L2 penalties of the logistic regression (on standardized features) to choose from by
        cross-validation over the training folds (mean AUC); the validation fold is not used.
    min_sensitivity:
        Sensitivity for abnormal images kept when choosing ``low``.
    """

    images_csv: str
    images: str
    folds_csv: str
    pretrained: str
    out: str = "runs/classifier"
    val_fold: int = 0
    chain: str = "yolo-512-clahe"
    imgsz: int = 320
    l2: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)
    min_sensitivity: float = 0.95
    threads: int = 1

    def __post_init__(self) -> None:
        for f in (self.images_csv, self.folds_csv, self.pretrained):
            if not Path(f).is_file():
                raise ConfigError(f"{f} does not exist")
        if not Path(self.images).is_dir():
            raise ConfigError(f"image folder {self.images} does not exist")
        if self.imgsz % 32:
            raise ConfigError(f"imgsz must be a multiple of 32, got {self.imgsz}")
        object.__setattr__(self, "l2", tuple(float(v) for v in (self.l2 if isinstance(self.l2, tuple | list) else (self.l2,))))
        if not self.l2 or min(self.l2) < 0:
            raise ConfigError("l2 needs at least one non-negative penalty")
        if not 0.0 < self.min_sensitivity <= 1.0:
            raise ConfigError("min_sensitivity must lie in (0, 1]")


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half)."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    pos, neg = p[y], p[~y]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allp = np.concatenate([pos, neg])[order]
    # average ranks of ties
    i = 0
    while i < len(allp):
        j = i
        while j + 1 < len(allp) and allp[j + 1] == allp[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def choose_low(y: np.ndarray, p: np.ndarray, min_sensitivity: float) -> float:
    """The highest threshold keeping ``min_sensitivity`` of the positives at or above it."""
    pos = np.sort(np.asarray(p, dtype=np.float64)[np.asarray(y).astype(bool)])
    if not len(pos):
        return 0.0
    k = int(np.floor((1.0 - min_sensitivity) * len(pos) + 1e-9))
    return float(pos[min(k, len(pos) - 1)])


def _labels(images_csv: str) -> dict[str, tuple[int, str]]:
    import csv

    from thoracic.io.ids import image_id

    out = {}
    with open(images_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            labels = row["finding_labels"].strip()
            out[image_id(row["image"])] = (0 if labels == "No Finding" else 1, row.get("patient_id", ""))
    return out


def _backbone(cfg: ClassifierTrainConfig):
    import torch

    from thoracic.train.yolov5_import import import_yolov5

    model, report = import_yolov5(cfg.pretrained, "yolov5n.yaml", nc=14)
    layers = torch.nn.ModuleList(list(model.model)[: max(FEATURE_LAYERS) + 1])

    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = layers

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pooled = []
            for i, m in enumerate(self.layers):
                x = m(x)  # layers 0-9 are a plain chain (no concatenations)
                if i in FEATURE_LAYERS:
                    pooled.append(x.mean(dim=(2, 3)))
            return torch.cat(pooled, 1)

    return Features().eval(), report


def train_classifier(cfg: ClassifierTrainConfig, *, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Extract features, fit, validate, export ``classifier.onnx``; returns the summary."""
    from thoracic.train._ultralytics import load_ultralytics

    load_ultralytics("classifier training", threads=cfg.threads)
    import torch

    from thoracic.data.splits import read_folds
    from thoracic.io.ids import image_id as _iid
    from thoracic.preprocess.model_input import prepare_8bit
    from thoracic.train.export import with_letterbox

    start = time.time()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({"thoracic_version": __version__, "config": asdict(cfg)}, indent=2) + "\n")
    labels = _labels(cfg.images_csv)
    folds = read_folds(cfg.folds_csv)
    files = {_iid(p.name): p for p in Path(cfg.images).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")}
    ids = sorted(i for i in labels if i in folds and i in files)
    if not ids:
        raise ConfigError("no image is in the label table, the folds and the image folder at once")
    # the images are already through cfg.chain when they come from an export: only letterbox here
    model_chain = with_letterbox(Chain("display"), cfg.imgsz)
    features, report = _backbone(cfg)
    cache = out / "features.npz"
    if cache.is_file() and list(np.load(cache)["ids"]) == ids:
        X = np.load(cache)["X"]
    else:
        rows = []
        with torch.no_grad():
            for n, iid in enumerate(ids):
                px = prepare_8bit(model_chain, files[iid]).pixels
                x = torch.from_numpy(np.ascontiguousarray(np.broadcast_to(px[None, None], (1, 3, cfg.imgsz, cfg.imgsz))))
                rows.append(features(x)[0].numpy())
                if progress:
                    progress(n + 1, len(ids))
        X = np.stack(rows).astype(np.float32)
        np.savez(cache, X=X, ids=np.asarray(ids))
    y = np.asarray([labels[i][0] for i in ids], dtype=np.float32)
    f = np.asarray([folds[i] for i in ids])
    tr, va = f != cfg.val_fold, f == cfg.val_fold
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-6

    def fit(Xs: np.ndarray, ys: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
        Xt, yt = torch.from_numpy((Xs - mu) / sd), torch.from_numpy(ys)
        w = torch.zeros(Xt.shape[1], requires_grad=True)
        b = torch.zeros(1, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=500, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(Xt @ w + b, yt) + l2 * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return w.detach().numpy(), float(b.detach())

    def prob(Xs: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
        return 1 / (1 + np.exp(-(((Xs - mu) / sd) @ w + b)))

    cv: dict[float, float] = {}
    inner = sorted(set(f[tr].tolist()))
    for l2 in cfg.l2:
        aucs = []
        for k in inner:
            fit_k, hold = tr & (f != k), tr & (f == k)
            aucs.append(roc_auc(y[hold], prob(X[hold], *fit(X[fit_k], y[fit_k], l2))))
        cv[l2] = float(np.mean(aucs))
    best_l2 = max(cfg.l2, key=lambda v: (cv[v], -v))
    w, b = fit(X[tr], y[tr], best_l2)
    p_val = prob(X[va], w, b)
    auc = roc_auc(y[va], p_val)
    low = choose_low(y[va], p_val, cfg.min_sensitivity)
    spec = float(((p_val < low) & (y[va] == 0)).sum() / max(1, (y[va] == 0).sum()))
    sens = float(((p_val >= low) & (y[va] == 1)).sum() / max(1, (y[va] == 1).sum()))
    # fold standardization into the linear layer; two logits (normal = 0, abnormal = z)
    wf = w / sd
    bf = b - float((mu / sd) @ w)
    head = torch.nn.Linear(X.shape[1], 2)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.weight[1] = torch.from_numpy(wf.astype(np.float32))
        head.bias[1] = bf

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features, self.head = features, head

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.head(self.features(x)), dim=1)

    onnx_path = out / "classifier.onnx"
    _export(Classifier().eval(), onnx_path, cfg, get_chain(cfg.chain), low, auc)
    # the exported model must reproduce the probe on a validation image
    from thoracic.classify.onnx import OnnxClassifier

    check = ids[int(np.flatnonzero(va)[0])]
    p_onnx = OnnxClassifier.load(onnx_path, threads=cfg.threads).p_abnormal(prepare_8bit(model_chain, files[check]))
    p_probe = float(p_val[0])
    summary = {
        "onnx": str(onnx_path), "n_train": int(tr.sum()), "n_val": int(va.sum()),
        "val_abnormal": int(y[va].sum()), "val_auc": auc, "low": low, "val_sensitivity_at_low": sens,
        "val_specificity_at_low": spec, "onnx_check": {"image_id": check, "probe": p_probe, "onnx": p_onnx}, "seconds": round(time.time() - start, 1),
        "import": report.summary(), "features": len(wf), "l2": best_l2, "cv_auc": {str(k): v for k, v in cv.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    np.savez(out / "val_predictions.npz", ids=np.asarray(ids)[va], y=y[va], p=p_val)
    return summary


def _export(model: Any, path: Path, cfg: ClassifierTrainConfig, chain: Chain, low: float, auc: float) -> None:
    import onnx

    from thoracic.train.export import torch_onnx_export, with_letterbox

    tmp = path.with_name(f".{path.name}.tmp")
    torch_onnx_export(model, cfg.imgsz, tmp, ["probabilities"])
    proto = onnx.load(str(tmp))
    meta = ModelMeta(
        kind="classifier", names=("normal", "abnormal"), trained_classes=("normal", "abnormal"),
        chain=with_letterbox(chain, cfg.imgsz), imgsz=cfg.imgsz, thoracic_version=__version__,
        training_data="NIH ChestX-ray14 subset (../shared/data/nih): 'No Finding' vs any finding label",
        architecture="yolov5n backbone (COCO, frozen, layers 0-9) + GAP(4,6,9) + linear",
        extra={"low": low, "val_auc": auc, "val_fold": cfg.val_fold},
    )
    write_meta(proto, meta)
    onnx.save(proto, str(tmp))
    tmp.replace(path)
