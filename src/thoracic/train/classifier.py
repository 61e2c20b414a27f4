"""Train the normal/abnormal classifier (the ``train`` extra).

A linear probe on the COCO-pretrained YOLOv5n backbone: the original checkpoint is imported
(:mod:`thoracic.train.yolov5_import`), its layers 0-9 are frozen, and the global averages of
the outputs of layers 4, 6 and 9 (64 + 128 + 256 channels, strides 8/16/32) are the features. A
logistic regression (L2, full-batch L-BFGS) on standardized features separates normal images from
images with any finding. Standardization and the linear layer are folded into one ``nn.Linear``,
and backbone + pooling + linear + softmax are exported to ONNX with thoracic's metadata.
Validation is on one patient-grouped fold; the filter threshold ``low`` is chosen there (the
highest threshold that keeps ``min_sensitivity`` of the abnormal validation images above it).

With ``arch`` an EfficientNet-Lite (:data:`thoracic.train.effnet.ARCHS`) the classifier is
instead fine-tuned end to end from ImageNet weights (:mod:`thoracic.train.effnet`,
:mod:`thoracic.train.finetune`) with a multi-label head (``abnormal`` and the VinDr findings NIH's
labels name), on patient-grouped folds: each fold's model scores the images of its held-out
patients, ``oof.csv`` holds these out-of-fold probabilities of every label for every image, and
``summary.json`` their ROC-AUC per label with a bootstrap 95% interval over patients. With
``final`` a model is then trained on all images and exported (thresholds chosen on the
out-of-fold predictions).

The labels come from any table :mod:`thoracic.data` loads (:func:`load_label_table`): VinDr's
``train.csv``, NIH's ``images.csv`` (or ``Data_Entry_2017.csv``), a plain thoracic CSV or a COCO
file; :func:`image_labels` derives each image's label from it (the rule is there). The derived
labels are written to ``labels.csv`` in the output folder.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from thoracic._version import __version__
from thoracic.data.annotations import Annotations, ImageInfo
from thoracic.errors import ConfigError
from thoracic.labels import NIH_IMAGE_TO_VINDR, NO_FINDING
from thoracic.models.meta import ModelMeta
from thoracic.models.runtime import write_meta
from thoracic.preprocess.chain import Chain, get_chain
from thoracic.train.augment import AugmentConfig
from thoracic.train.effnet import ARCHS
from thoracic.train.export import with_letterbox
from thoracic.train.finetune import FinetuneConfig, FitSettings

__all__ = [
    "LABEL_FORMATS",
    "OOF_COLUMNS",
    "PROBE_ARCH",
    "ClassifierTrainConfig",
    "ImageLabel",
    "choose_low",
    "image_labels",
    "load_label_table",
    "oof_metrics",
    "roc_auc",
    "train_classifier",
    "youden_threshold",
]

FEATURE_LAYERS = (4, 6, 9)
#: The ``arch`` of the linear probe on the COCO YOLOv5n backbone (the default).
PROBE_ARCH = "yolov5n-probe"
#: The label tables :func:`load_label_table` reads (``"auto"`` recognizes them).
LABEL_FORMATS = ("vinbigdata", "nih", "csv", "coco")
#: The columns of the ``labels.csv`` a run writes: the label of every image it used.
LABEL_COLUMNS = ("image_id", "group", "fold", "abnormal", "findings", "source")
#: Raster files are taken as already through the chain (an export's images) unless ``raw_images``.
_RASTER = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass(frozen=True)
class ClassifierTrainConfig(FitSettings):
    """Settings of one classifier run (the :class:`~thoracic.train.finetune.FitSettings` are an
    EfficientNet-Lite's fine-tuning settings; the linear probe ignores them).

    Attributes
    ----------
    labels:
        The label table (:func:`load_label_table`): VinDr ``train.csv``, NIH ``images.csv``, a
        plain CSV or a COCO file. With :func:`train_classifier`'s ``table`` it only names the table.
    images:
        Folder of the images (searched recursively). Default: where the table's loader found
        them (``train/`` beside a VinDr ``train.csv``, ``images/`` beside NIH's ``images.csv``).
    folds_csv:
        ``image_id, group, fold`` (``thoracic dataset split`` or an export's ``folds.csv``).
        Default: ``n_folds`` patient-grouped folds stratified by finding, written to ``folds.csv``.
    pretrained:
        Original-YOLOv5 checkpoint whose backbone extracts features.
    out:
        Output folder: ``classifier.onnx``, ``labels.csv``, ``features.npz`` (cache), ``summary.json``.
    val_fold:
        The validation fold.
    chain:
        The preprocessing chain of the model (recorded; ``letterbox(imgsz)`` is appended). A DICOM
        (any file not PNG/JPEG/TIFF), or any file with ``raw_images``, goes through it here; a PNG
        or JPEG is taken as already through it (the images of a ``dataset export``).
    imgsz:
        Classifier input size.
    l2:
        L2 penalties of the logistic regression (on standardized features) to choose from by
        cross-validation over the training folds (mean AUC); the validation fold is not used.
    min_sensitivity:
        Sensitivity for abnormal images kept when choosing ``low``.
    labels_format:
        One of :data:`LABEL_FORMATS`, or ``"auto"`` (from the file).
    raw_images:
        PNG/JPEG images are raw too (run the chain on them).
    n_folds:
        The number of folds made when there is no ``folds_csv``.
    images_csv:
        The former name of ``labels`` for NIH's ``images.csv`` (sets ``labels`` and the format).
    arch:
        :data:`PROBE_ARCH` (the linear probe; needs ``pretrained``) or an EfficientNet-Lite
        (:data:`thoracic.train.effnet.ARCHS`): fine-tuned end to end; ``pretrained`` is then its
        ImageNet ``.pth`` (default: the installed wheel's). The settings below are the fine-tuning's.
    epochs, batch, lr, weight_decay, label_smoothing, seed, device:
        :class:`thoracic.train.finetune.FitSettings`.
    augment:
        Augment the training images (:class:`thoracic.train.augment.AugmentConfig`'s defaults).
    cv_folds:
        The folds whose held-out images get out-of-fold predictions (each one model trained on the
        others); empty: every fold.
    final:
        After the folds, train on all images and export ``classifier.onnx``.
    dropout:
        Dropout before the head.
    """

    labels: str = ""
    images: str = ""
    folds_csv: str = ""
    pretrained: str = ""
    out: str = "runs/classifier"
    val_fold: int = 0
    chain: str = "yolo-512-clahe"
    imgsz: int = 320
    l2: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)
    min_sensitivity: float = 0.95
    threads: int = 1
    labels_format: str = "auto"
    raw_images: bool = False
    n_folds: int = 5
    images_csv: str = ""
    arch: str = PROBE_ARCH
    augment: bool = True
    cv_folds: tuple[int, ...] = ()
    final: bool = True
    dropout: float = 0.2

    def finetune_config(self) -> FinetuneConfig:
        """The fine-tuning settings of an EfficientNet-Lite run."""
        return FinetuneConfig(**self.fit_settings(), augment=AugmentConfig() if self.augment else AugmentConfig.off())

    @property
    def finetunes(self) -> bool:
        """The run fine-tunes an EfficientNet-Lite (not the linear probe)."""
        return self.arch != PROBE_ARCH

    def __post_init__(self) -> None:
        if self.images_csv:
            if self.labels and self.labels != self.images_csv:
                raise ConfigError("give the label table as labels or images_csv, not both")
            object.__setattr__(self, "labels", self.images_csv)
            object.__setattr__(self, "labels_format", "nih")
        if not self.labels:
            raise ConfigError("the classifier needs a label table")
        if self.arch not in (PROBE_ARCH, *ARCHS):
            raise ConfigError.unknown("classifier architecture", self.arch, (PROBE_ARCH, *ARCHS))
        if not self.pretrained and not self.finetunes:
            raise ConfigError("the classifier needs a pretrained original-YOLOv5 checkpoint")
        object.__setattr__(self, "cv_folds", tuple(int(k) for k in self.cv_folds))
        if self.finetunes:
            self.check_fit_settings()
            if not 0.0 <= self.dropout < 1.0:
                raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.labels_format not in ("auto", *LABEL_FORMATS):
            raise ConfigError.unknown("label table format", self.labels_format, ("auto", *LABEL_FORMATS))
        for f in (self.labels, self.folds_csv, self.pretrained):
            if f and not Path(f).is_file():
                raise ConfigError(f"{f} does not exist")
        if self.images and not Path(self.images).is_dir():
            raise ConfigError(f"image folder {self.images} does not exist")
        if self.imgsz % 32:
            raise ConfigError(f"imgsz must be a multiple of 32, got {self.imgsz}")
        object.__setattr__(self, "l2", tuple(float(v) for v in (self.l2 if isinstance(self.l2, tuple | list) else (self.l2,))))
        if not self.l2 or min(self.l2) < 0:
            raise ConfigError("l2 needs at least one non-negative penalty")
        if not 0.0 < self.min_sensitivity <= 1.0:
            raise ConfigError("min_sensitivity must lie in (0, 1]")
        if self.n_folds < 2:
            raise ConfigError(f"n_folds must be >= 2, got {self.n_folds}")


@dataclass(frozen=True)
class ImageLabel:
    """The classifier's label of one image.

    Attributes
    ----------
    abnormal:
        1 when the image has a finding (:func:`image_labels`' rule), else 0.
    group:
        The patient id, or ``image:<id>`` when unknown (folds keep a group together).
    findings:
        The findings named for the image, sorted: VinDr names of the boxes of every reader, and
        image-level labels (NIH's, mapped to VinDr names where they have one).
    source:
        The image file, when the table's loader found it.
    """

    abnormal: int
    group: str
    findings: tuple[str, ...]
    source: str = ""


def image_labels(table: Annotations) -> dict[str, ImageLabel]:
    """The normal/abnormal label of every image of ``table``.

    The rule: an image is **abnormal** when at least one reader drew a finding on it (a box of
    any of the 14 findings) or its image-level labels name a finding (NIH's report labels other
    than "No Finding"); otherwise it is **normal** (every reader said "No finding", or nothing
    was marked). With several readers (VinDr: three per image) one reader's finding makes the
    image abnormal even when the others said "No finding": the filter this classifier feeds must
    keep every image a radiologist saw something on, so disagreement counts as abnormal.
    ``findings`` lists the names of what was marked, by any reader.
    """
    found: dict[str, set[str]] = {iid: set() for iid in table.images}
    for iid, label in zip(table.image_id.tolist(), table.label.tolist(), strict=True):
        if label != NO_FINDING:
            found[iid].add(str(label))
    out = {}
    for iid, info in table.images.items():
        names = found[iid]
        for raw in info.labels:
            if raw.strip().lower() not in ("no finding", ""):
                names.add(NIH_IMAGE_TO_VINDR.get(raw, raw))
        out[iid] = ImageLabel(int(bool(names)), info.patient_id or f"image:{iid}", tuple(sorted(names)),
                              info.source or "")
    return out


def _table_format(path: Path) -> str:
    from thoracic.data.tables import read_header

    if path.suffix.lower() == ".json":
        return "coco"
    header = set(read_header(path))
    if {"class_name", "rad_id"} <= header:
        return "vinbigdata"
    if {"image", "finding_labels"} <= header or {"Image Index", "Finding Labels"} <= header:
        return "nih"
    if {"image_id", "label"} <= header:
        return "csv"
    raise ConfigError(
        "not a label table thoracic knows: expected VinDr's train.csv (class_name, rad_id), NIH's images.csv "
        f"(image, finding_labels), a plain CSV (image_id, label, ...) or a COCO .json; found columns {sorted(header)}",
        path=str(path))


def _nih_images(path: Path, images: Path | None) -> Annotations:
    """NIH's image table alone (no boxes): every image with its patient and report labels."""
    from thoracic.data.tables import find_images, read_csv, read_header
    from thoracic.io.ids import image_id

    header = read_header(path)
    cols = ("image", "finding_labels", "patient_id") if "image" in header else ("Image Index", "Finding Labels", "Patient ID")
    if images is None and (path.parent / "images").is_dir():
        images = path.parent / "images"
    sources = find_images(images) if images is not None else {}
    header, lines = read_csv(path, cols, what="NIH images")
    ci, cl, cp = (header.index(c) for c in cols)
    infos: dict[str, ImageInfo] = {}
    for _, f in lines:
        if len(f) <= max(ci, cl, cp):
            continue
        iid = image_id(f[ci].strip())
        labels = tuple(x.strip() for x in f[cl].split("|") if x.strip())
        infos.setdefault(iid, ImageInfo(iid, patient_id=f[cp].strip() or None, source=sources.get(iid), labels=labels))
    return Annotations(infos, [], [], np.zeros((0, 4)), name="nih")


def load_label_table(path: str | PathLike[str], fmt: str = "auto", *,
                     images: str | PathLike[str] | None = None) -> tuple[Annotations, str]:
    """The table ``path`` (and the format it was read as) for :func:`image_labels`.

    ``images`` is the image folder; a VinDr ``train.csv`` finds ``train/`` beside it, NIH's
    ``images.csv`` ``images/``, by default.
    """
    from thoracic import data

    p = Path(path)
    fmt = _table_format(p) if fmt == "auto" else fmt
    folder = Path(images) if images else None
    if fmt == "vinbigdata":
        if folder is None and (p.parent / "train").is_dir():
            folder = p.parent / "train"
        return data.load_vinbigdata(p, images=folder), fmt
    if fmt == "nih":
        return _nih_images(p, folder), fmt
    if fmt == "csv":
        return data.load_csv(p), fmt
    if fmt == "coco":
        return data.load_coco(p), fmt
    raise ConfigError.unknown("label table format", fmt, LABEL_FORMATS)


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


@dataclass(frozen=True, eq=False)
class _Labelled:
    """The images of one run: their labels, files and folds (``labels.csv`` written)."""

    out: Path
    fmt: str
    labels: dict[str, ImageLabel]
    files: dict[str, Path]
    folds: dict[str, int]
    ids: list[str]
    chain: Chain
    raw_images: bool
    imgsz: int

    def chain_of(self, path: Path) -> Chain:
        """PNG/JPEG images are already through the chain when they come from an export: only
        letterbox them; a DICOM (or any image with ``raw_images``) goes through the whole chain."""
        if self.raw_images or path.suffix.lower() not in _RASTER:
            return self.chain
        return with_letterbox(Chain("display"), self.imgsz)


def _labelled(cfg: ClassifierTrainConfig, table: Annotations | None) -> _Labelled:
    from thoracic.data.splits import kfold_split, read_folds, write_folds
    from thoracic.data.tables import find_images

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({"thoracic_version": __version__, "config": asdict(cfg)}, indent=2) + "\n")
    fmt = cfg.labels_format
    if table is None:
        table, fmt = load_label_table(cfg.labels, cfg.labels_format, images=cfg.images or None)
    labels = image_labels(table)
    on_disk = find_images(cfg.images) if cfg.images else {}
    files = {i: Path(on_disk.get(i) or lab.source) for i, lab in labels.items() if on_disk.get(i) or lab.source}
    if cfg.folds_csv:
        folds = read_folds(cfg.folds_csv)
    else:
        folds = kfold_split(table.select_images(files), cfg.n_folds)
        write_folds(folds, table, out / "folds.csv")
    ids = sorted(i for i in labels if i in folds and i in files)
    if not ids:
        raise ConfigError("no image is in the label table, the folds and the image folder at once")
    with (out / "labels.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(LABEL_COLUMNS)
        for i in ids:
            lab = labels[i]
            writer.writerow([i, lab.group, folds[i], lab.abnormal, "|".join(lab.findings), str(files[i])])
    return _Labelled(out, fmt, labels, files, folds, ids, with_letterbox(get_chain(cfg.chain), cfg.imgsz), cfg.raw_images,
                     cfg.imgsz)


def train_classifier(cfg: ClassifierTrainConfig, *, table: Annotations | None = None,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Derive the labels, extract features, fit, validate, export ``classifier.onnx``; returns the summary.

    ``table``: the label table, already loaded (the command line loads it with the ``dataset``
    commands' input options); default: :func:`load_label_table` of ``cfg.labels``.

    Raises
    ------
    ConfigError
        No image is in the table, the folds and on disk at once; the validation fold is empty.
    """
    start = time.time()
    if cfg.finetunes:
        return _train_lite(cfg, _labelled(cfg, table), progress, start)
    from thoracic.train._ultralytics import load_ultralytics

    load_ultralytics("classifier training", threads=cfg.threads)
    import torch

    from thoracic.preprocess.model_input import prepare_8bit

    run = _labelled(cfg, table)
    out, fmt, labels, files, folds, ids, chain_of = run.out, run.fmt, run.labels, run.files, run.folds, run.ids, run.chain_of
    if not any(folds[i] == cfg.val_fold for i in ids):
        raise ConfigError(f"validation fold {cfg.val_fold} holds none of the {len(ids)} image(s)")
    features, report = _backbone(cfg)
    cache = out / "features.npz"
    key = json.dumps([str(chain_of(files[i]).spec()) for i in ids])
    cached = np.load(cache) if cache.is_file() else None
    if cached is not None and list(cached["ids"]) == ids and "key" in cached and str(cached["key"]) == key:
        X = cached["X"]
    else:
        rows = []
        with torch.no_grad():
            for n, iid in enumerate(ids):
                px = prepare_8bit(chain_of(files[iid]), files[iid]).pixels
                x = torch.from_numpy(np.ascontiguousarray(np.broadcast_to(px[None, None], (1, 3, cfg.imgsz, cfg.imgsz))))
                rows.append(features(x)[0].numpy())
                if progress:
                    progress(n + 1, len(ids))
        X = np.stack(rows).astype(np.float32)
        np.savez(cache, X=X, ids=np.asarray(ids), key=np.asarray(key))
    y = np.asarray([labels[i].abnormal for i in ids], dtype=np.float32)
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
    described = (f"{fmt} labels ({Path(cfg.labels).name}), {len(ids)} images: normal vs a finding by any reader "
                 "(or image label)")
    _export(Classifier().eval(), onnx_path, cfg, get_chain(cfg.chain), low, auc, described)
    # the exported model must reproduce the probe on a validation image
    from thoracic.classify.onnx import OnnxClassifier

    check = ids[int(np.flatnonzero(va)[0])]
    p_onnx = OnnxClassifier.load(onnx_path, threads=cfg.threads).p_abnormal(prepare_8bit(chain_of(files[check]), files[check]))
    p_probe = float(p_val[0])
    summary = {
        "onnx": str(onnx_path), "n_train": int(tr.sum()), "n_val": int(va.sum()),
        "val_abnormal": int(y[va].sum()), "val_auc": auc, "low": low, "val_sensitivity_at_low": sens,
        "val_specificity_at_low": spec, "onnx_check": {"image_id": check, "probe": p_probe, "onnx": p_onnx}, "seconds": round(time.time() - start, 1),
        "import": report.summary(), "features": len(wf), "l2": best_l2, "cv_auc": {str(k): v for k, v in cv.items()},
        "labels": {"format": fmt, "table": str(cfg.labels), "images": len(ids), "abnormal": int(y.sum()),
                   "without_file": len(labels) - len(files), "written": str(out / "labels.csv")},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    np.savez(out / "val_predictions.npz", ids=np.asarray(ids)[va], y=y[va], p=p_val)
    return summary


#: The columns of ``oof.csv`` before the labels': then ``<label>`` (0/1) and ``p:<label>`` for each.
OOF_COLUMNS = ("image_id", "group", "fold")


def oof_metrics(y: np.ndarray, p: np.ndarray, groups: list[str], labels: tuple[str, ...], *,
                resamples: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """ROC-AUC per label of out-of-fold probabilities, with a 95% bootstrap interval over patients.

    ``y`` and ``p`` are ``N x L`` (one row per image); ``groups`` the patient of each row: a
    resample draws patients with replacement and takes all their images, so images of one
    patient never count as independent. A label without positives or negatives has ``auc``
    ``nan`` and no interval.
    """
    from thoracic.evaluate.bootstrap import bootstrap_intervals, weighted_auc

    names = sorted(set(groups))
    where = {g: i for i, g in enumerate(names)}
    index = np.asarray([where[g] for g in groups], dtype=np.int64)
    out: dict[str, dict[str, Any]] = {}
    ones = np.ones((1, len(groups)))
    for j, label in enumerate(labels):
        yj, pj = y[:, j].astype(bool), p[:, j].astype(np.float64)
        auc = float(weighted_auc(ones, yj, pj)[0])
        ci = None
        if np.isfinite(auc) and names:
            ci = bootstrap_intervals(len(names), lambda w, yj=yj, pj=pj: {"auc": weighted_auc(w[:, index], yj, pj)},
                                     resamples=resamples, seed=seed)["auc"]
        out[label] = {"auc": auc, "ci95": list(ci) if ci else None, "positives": int(yj.sum()), "images": len(yj)}
    return out


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold maximizing sensitivity + specificity - 1 (0.5 without positives or negatives)."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    if y.all() or not y.any():
        return 0.5
    best, best_j = 0.5, -1.0
    for t in np.unique(p):
        j = float((p[y] >= t).mean() + (p[~y] < t).mean() - 1.0)
        if j > best_j:
            best, best_j = float(t), j
    return best


def _train_lite(cfg: ClassifierTrainConfig, run: _Labelled, progress: Callable[[int, int], None] | None,
                start: float) -> dict[str, Any]:
    """Fine-tune an EfficientNet-Lite on patient-grouped folds: out-of-fold predictions, then the final model."""
    import torch

    from thoracic.preprocess.model_input import prepare_8bit
    from thoracic.train.effnet import HEAD_LABELS, build_classifier, export_classifier_onnx
    from thoracic.train.finetune import fit, predict

    torch.set_num_threads(max(1, int(cfg.threads)))
    ft = cfg.finetune_config()
    ids, labels, head = run.ids, run.labels, HEAD_LABELS
    y = np.asarray([[labels[i].abnormal, *(int(f in labels[i].findings) for f in head[1:])] for i in ids], np.float32)
    images = np.empty((len(ids), cfg.imgsz, cfg.imgsz), np.uint8)
    for n, iid in enumerate(ids):
        px = prepare_8bit(run.chain_of(run.files[iid]), run.files[iid]).pixels
        images[n] = px if px.dtype == np.uint8 else np.clip(px * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if progress:
            progress(n + 1, len(ids))
    fold = np.asarray([run.folds[i] for i in ids])
    groups = [labels[i].group for i in ids]
    present = sorted(set(fold.tolist()))
    cv = list(cfg.cv_folds) or present
    absent = [k for k in cv if k not in present]
    if absent:
        raise ConfigError(f"fold(s) {absent} hold none of the {len(ids)} image(s) (folds: {present})")

    def new_model(seed: int) -> Any:
        torch.manual_seed(seed)
        return build_classifier(cfg.arch, head, pretrained=True, imgsz=cfg.imgsz, weights=cfg.pretrained or None,
                                dropout=cfg.dropout)

    oof = np.full(y.shape, np.nan, np.float32)
    history: dict[str, list[dict[str, Any]]] = {}
    pretrained = None
    for k in cv:
        tr, va = fold != k, fold == k
        if tr.sum() < 2:
            raise ConfigError(f"fold {k}: fewer than two training images")
        model = new_model(cfg.seed + k)
        pretrained = model.pretrained
        history[f"fold{k}"] = fit(model, images[tr], y[tr], ft)
        oof[va] = predict(model, images[va], batch=max(2, cfg.batch), device=cfg.device)
        del model
    scored = ~np.isnan(oof[:, 0])
    with (run.out / "oof.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*OOF_COLUMNS, *head, *(f"p:{lab}" for lab in head)])
        for r in np.flatnonzero(scored):
            writer.writerow([ids[r], groups[r], int(fold[r]), *(int(v) for v in y[r]),
                             *(f"{float(v):.6f}" for v in oof[r])])
    metrics = oof_metrics(y[scored], oof[scored], [g for g, s in zip(groups, scored, strict=True) if s], head) \
        if scored.any() else {}
    chosen = bool(scored.any() and 0 < y[scored, 0].sum() < scored.sum())
    low = choose_low(y[scored, 0], oof[scored, 0], cfg.min_sensitivity) if chosen else 0.5
    thresholds = {lab: youden_threshold(y[scored, j], oof[scored, j]) if scored.any() else 0.5
                  for j, lab in enumerate(head)}
    summary: dict[str, Any] = {
        "arch": cfg.arch, "labels": list(head), "images": len(ids), "folds": cv, "oof_images": int(scored.sum()),
        "oof_csv": str(run.out / "oof.csv"), "oof": metrics, "low": low, "low_chosen_on_oof": chosen,
        "thresholds": thresholds, "finetune": {**asdict(ft), "augment": ft.augment.to_dict()}, "history": history,
        "positives": {lab: int(y[:, j].sum()) for j, lab in enumerate(head)},
        "label_table": {"format": run.fmt, "table": str(cfg.labels), "written": str(run.out / "labels.csv")},
    }
    if cfg.final:
        model = new_model(cfg.seed + 1000)
        pretrained = model.pretrained
        history["final"] = fit(model, images, y, ft)
        onnx_path = run.out / "classifier.onnx"
        described = (f"{run.fmt} labels ({Path(cfg.labels).name}), {len(ids)} images: abnormal (a finding by any reader "
                     f"or image label) and {len(head) - 1} findings, fine-tuned on all folds")
        export_classifier_onnx(model.cpu(), onnx_path, chain=run.chain, low=low, thresholds=thresholds,
                               training_data=described,
                               extra={"oof_auc": {k: v["auc"] for k, v in metrics.items()}, "folds": cv,
                                      "low_chosen_on_oof": chosen})
        # the exported model must reproduce the torch model on a training image
        from thoracic.classify.onnx import OnnxClassifier

        check = ids[0]
        p_onnx = OnnxClassifier.load(onnx_path, threads=cfg.threads).classify(
            prepare_8bit(run.chain_of(run.files[check]), run.files[check]))
        p_torch = predict(model.cpu(), images[:1], batch=1)[0]
        summary.update(onnx=str(onnx_path), onnx_bytes=onnx_path.stat().st_size, onnx_check={
            "image_id": check, "torch": float(p_torch[0]), "onnx": p_onnx.p_abnormal,
            "max_abs_difference": float(np.max(np.abs(p_torch - np.asarray([p_onnx.probabilities[lab] for lab in head]))))})
    summary["pretrained"] = pretrained.to_dict() if pretrained else None
    summary["seconds"] = round(time.time() - start, 1)
    (run.out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def _export(model: Any, path: Path, cfg: ClassifierTrainConfig, chain: Chain, low: float, auc: float,
            training_data: str) -> None:
    import onnx

    from thoracic.train.export import torch_onnx_export, with_letterbox

    tmp = path.with_name(f".{path.name}.tmp")
    torch_onnx_export(model, cfg.imgsz, tmp, ["probabilities"])
    proto = onnx.load(str(tmp))
    meta = ModelMeta(
        kind="classifier", names=("normal", "abnormal"), trained_classes=("normal", "abnormal"),
        chain=with_letterbox(chain, cfg.imgsz), imgsz=cfg.imgsz, thoracic_version=__version__,
        training_data=training_data,
        architecture="yolov5n backbone (COCO, frozen, layers 0-9) + GAP(4,6,9) + linear",
        extra={"low": low, "val_auc": auc, "val_fold": cfg.val_fold},
    )
    write_meta(proto, meta)
    onnx.save(proto, str(tmp))
    tmp.replace(path)
