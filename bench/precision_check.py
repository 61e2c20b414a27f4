"""Reduced precision, only where it holds (issue 18): each shipped model at float32 and at each
reduced precision on the same images, the paired differences with bootstrap intervals, and the
verdict the loader follows (``src/thoracic/models/precision.json``).

How to run, from the repository root (``../shared`` is the licensed data, see its README)::

    .venv/bin/python bench/precision_check.py --out /tmp/precision            # measure and print
    .venv/bin/python bench/precision_check.py --out /tmp/precision --write    # + precision.json

Variants of every model, each on the same inputs (read and preprocessed once per image, then run
by every variant in turn, so load from other programs hits them alike):

- ``onnxruntime f32``: the reference (what ``--backend auto`` runs and every model card measured);
- ``openvino f32``: the same file on OpenVINO (a back-end difference, no precision change);
- ``openvino bf16``: OpenVINO's bf16 inference precision, only where the CPU reports ``BF16``;
- ``onnxruntime int8`` and ``openvino int8``: the file quantized statically by ONNX Runtime
  (``quantize_static``, QDQ format) after its pre-processing (``quant_pre_process``), with settings
  fixed before any measurement: the weight layers only (Conv, ConvTranspose, Gemm, MatMul; the
  detector's box decoding, concatenation of boxes with scores and every other element-wise
  operator stay float32), weights int8 per channel, activations uint8 asymmetric, no reduced
  range (the CPU has VNNI), MinMax calibration on ``--calibration`` (100) NIH **training** images
  (folds other than the validation fold; drawn with seed 0), each turned into the model's input
  by the exact inference path.

Measured, against ``onnxruntime f32`` on the same images:

- detector: Kaggle mAP@0.4 (:func:`thoracic.evaluate.kaggle_map`, the detector alone with
  ``thoracic predict``'s defaults, a "No finding" row per image) and the abnormal-vs-normal AUC of
  its "No finding" score, on the detector's validation fold (fold 0 of the patient-grouped 5-fold
  split of ``thoracic dataset export --folds 5 --seed 0``: the 133 images with boxes or "No
  Finding");
- classifier: ROC AUC of P(abnormal), on the same fold 0 (all 207 of its images: the
  classifier's validation set; NIH report labels);
- lungs: mean Dice on ``../shared/data/lungseg`` ``split=eval_nc`` (108 pairs, validation only),
  through ``docs/lungs/evaluate_lungs.py``'s inference path.

The rule (issue 18, fixed before the numbers): a reduced precision is **accepted** for a model
file when its point estimate falls by at most 0.005 in Kaggle mAP@0.4 and 0.005 in abnormal AUC
(detector: both; classifier: AUC) or 0.002 in Dice (lungs). The 95% intervals come from a paired
bootstrap over images (``--resamples`` 2,000, seed 0: both variants scored on the same resampled
images). Nothing else is chosen on the validation images. ``--write`` records each verdict in
``precision.json``, keyed by the model file's sha256 (its id), with the numbers and this command:
``--precision auto`` uses a precision only where its entry says ``passed``.

An int8 verdict is about the quantized file, which differs from the shipped one: it is recorded
with ``shipped: false`` and the loader never uses it (no int8 file is shipped).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

#: The issue's limits: the largest accepted fall of each metric.
LIMITS = {"map": 0.005, "auc": 0.005, "dice": 0.002}
#: What decides each model's verdict.
CRITERIA = {"detector": ("map", "auc"), "classifier": ("auc",), "lungs": ("dice",)}
REFERENCE = "onnxruntime f32"
#: The candidates: variant name -> (precision, back-end).
CANDIDATES = {"openvino bf16": ("bf16", "openvino"), "onnxruntime int8": ("int8", "onnxruntime"),
              "openvino int8": ("int8", "openvino")}
#: The int8 settings, fixed before any measurement (see the module docstring).
INT8_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class TimedSession:
    """A session that times its calls and, while ``feeds`` is a list, keeps a copy of each input."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0
        self.feeds: list[dict[str, np.ndarray]] | None = None

    def run(self, names: Any, feeds: dict[str, np.ndarray]) -> Any:
        if self.feeds is not None:
            self.feeds.append({k: np.array(v, copy=True) for k, v in feeds.items()})
        t0 = time.perf_counter()
        out = self.inner.run(names, feeds)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def has_bf16() -> bool:
    from thoracic.models.runtime import import_openvino, openvino_available

    if not openvino_available():
        return False
    return "BF16" in import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def model_class(kind: str) -> Any:
    from thoracic.anatomy import LungSegmenter
    from thoracic.classify import OnnxClassifier
    from thoracic.detect import OnnxDetector

    return {"detector": OnnxDetector, "classifier": OnnxClassifier, "lungs": LungSegmenter}[kind]


def load_variants(kind: str, path: Path, int8: Path | None, threads: int, bf16: bool) -> dict[str, Any]:
    """Every variant of one model, each with a :class:`TimedSession`."""
    from thoracic.models.runtime import onnx_backend, onnx_device, openvino_available

    cls = model_class(kind)
    plan: list[tuple[str, Path, str, str]] = [(REFERENCE, path, "onnxruntime", "f32")]
    if openvino_available():
        plan.append(("openvino f32", path, "openvino", "f32"))
        if bf16:
            plan.append(("openvino bf16", path, "openvino", "bf16"))
    if int8 is not None:
        plan.append(("onnxruntime int8", int8, "onnxruntime", "f32"))
        if openvino_available():
            plan.append(("openvino int8", int8, "openvino", "f32"))
    out = {}
    for name, file, backend, precision in plan:
        with onnx_device("cpu"), onnx_backend(backend, precision):
            model = cls.load(file, threads=threads)
        model.session = TimedSession(model.session)
        out[name] = model
    return out


# --- data ------------------------------------------------------------------------------------------
def nih_fold(nih: Path, folds: int, seed: int, fold: int) -> dict[str, Any]:
    """The detector's split of the NIH subset: its validation images (with truth), the
    classifier's (with labels) and the training images (for calibration)."""
    from thoracic.data import kfold_split
    from thoracic.data.annotations import Annotations
    from thoracic.data.nih import load_nih
    from thoracic.labels import NO_FINDING
    from thoracic.train.classifier import image_labels

    ann = load_nih(nih / "images.csv", nih / "boxes.csv", images=nih / "images")
    split = kfold_split(ann, folds, seed=seed)
    labelled = set(ann.image_id[ann.is_finding].tolist()) | set(ann.image_id[ann.label == NO_FINDING].tolist())
    val = sorted(i for i, k in split.items() if k == fold)
    det_val = [i for i in val if i in labelled]
    images = {i: ann.images[i] for i in det_val}
    keep = np.fromiter((i in images for i in ann.image_id.tolist()), dtype=bool, count=len(ann))
    truth_rows = [(i, lab, *b) for i, lab, b in zip(ann.image_id[keep].tolist(), ann.label[keep].tolist(),
                                                   ann.boxes[keep].tolist(), strict=True)]
    labels = image_labels(ann)
    return {
        "sources": {i: ann.images[i].source for i in ann.images},
        "val": val,
        "det_val": det_val,
        "truth": Annotations.from_rows(images, truth_rows),
        "abnormal": {i: labels[i].abnormal for i in val},
        "train": sorted(i for i, k in split.items() if k != fold),
    }


def calibration_ids(train: list[str], n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(np.asarray(train), size=min(n, len(train)), replace=False).tolist())


# --- int8 ------------------------------------------------------------------------------------------
def quantize(path: Path, feeds: list[dict[str, np.ndarray]], out: Path) -> Path:
    """``path`` quantized statically (QDQ) with ``feeds`` as the calibration inputs; the thoracic
    metadata is kept (``quantize_static`` copies the model's ``metadata_props``)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    out.mkdir(parents=True, exist_ok=True)
    pre = out / f"{path.stem}.pre.onnx"
    quant_pre_process(str(path), str(pre))
    target = out / f"{path.stem}.int8.onnx"
    quantize_static(str(pre), str(target), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=list(INT8_OPS),
                    per_channel=True, reduce_range=False, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, extra_options={"CalibMaxIntermediateOutputs": 8})
    pre.unlink()
    return target


def calibrate_nih(data: dict[str, Any], ids: list[str], threads: int) -> dict[str, list[dict[str, np.ndarray]]]:
    """The detector's and the classifier's inputs on NIH training images (the exact inference path)."""
    from thoracic.inference.predictor import Predictor
    from thoracic.models.registry import model_path

    det = model_class("detector").load(model_path("detector"), threads=threads)
    clf = model_class("classifier").load(model_path("classifier"), threads=threads)
    det.session, clf.session = TimedSession(det.session), TimedSession(clf.session)
    predictor = Predictor([det], clf)
    det.session.feeds, clf.session.feeds = [], []
    for iid in ids:
        predictor.predict(data["sources"][iid], image_id=iid)
    return {"detector": det.session.feeds or [], "classifier": clf.session.feeds or []}


def calibrate_lungs(data: dict[str, Any], ids: list[str], threads: int) -> list[dict[str, np.ndarray]]:
    from thoracic.io import read
    from thoracic.models.registry import model_path

    seg = model_class("lungs").load(model_path("lungs"), threads=threads)
    seg.session = TimedSession(seg.session)
    seg.session.feeds = []
    for iid in ids:
        seg.segment(read(data["sources"][iid], seg.contract.chain.read_options(), image_id=iid))
    return seg.session.feeds or []


# --- scoring ---------------------------------------------------------------------------------------
def paired(n: int, stat: Callable[[np.ndarray, str], np.ndarray], names: list[str], resamples: int,
           seed: int = 0) -> dict[str, tuple[float, float] | None]:
    """Paired bootstrap intervals of ``stat(w, name) - stat(w, REFERENCE)`` for each variant name."""
    from thoracic.evaluate.bootstrap import bootstrap_intervals

    def statistic(w: np.ndarray) -> dict[str, np.ndarray]:
        ref = stat(w, REFERENCE)
        return {name: stat(w, name) - ref for name in names if name != REFERENCE}

    return bootstrap_intervals(n, statistic, resamples, seed)


def weighted_map(truth: Any, preds: Any, images: list[str]) -> Callable[[np.ndarray], np.ndarray]:
    """Kaggle mAP@0.4 per resample (draw counts ``w`` over ``images``), the bootstrap of ``thoracic evaluate``."""
    from collections import Counter

    from thoracic.evaluate.bootstrap import weighted_ap
    from thoracic.evaluate.detection import match

    index = {k: i for i, k in enumerate(images)}
    matched, _ = match(truth, preds, 0.4)
    pidx = np.fromiter((index[i] for i in preds.image_id.tolist()), dtype=np.int64, count=len(preds))
    tidx = np.fromiter((index[i] for i in truth.image_id.tolist()), dtype=np.int64, count=len(truth))
    classes = []
    for lab in sorted(Counter(truth.label.tolist())):
        rows = np.flatnonzero(preds.label == lab)
        rows = rows[np.argsort(-preds.score[rows], kind="stable")]
        classes.append((pidx[rows], matched[rows], np.bincount(tidx[truth.label == lab], minlength=len(images))))

    def stat(w: np.ndarray) -> np.ndarray:
        aps = np.vstack([weighted_ap(w[:, pi], hits, w @ counts) for pi, hits, counts in classes])
        return np.nanmean(aps, axis=0)

    return stat


def score_detector(data: dict[str, Any], variants: dict[str, Any], classifiers: dict[str, Any],
                   resamples: int) -> dict[str, Any]:
    """Detector variants on the detector's validation images, classifier variants on all of fold 0."""
    from thoracic.data.annotations import Annotations
    from thoracic.evaluate import kaggle_map
    from thoracic.evaluate.bootstrap import weighted_auc
    from thoracic.evaluate.classification import roc_auc
    from thoracic.inference.predictor import Predictor
    from thoracic.labels import NO_FINDING, NO_FINDING_BOX

    ref = Predictor([variants[REFERENCE]], classifiers[REFERENCE])  # reads and prepares once per image
    det_ids = set(data["det_val"])
    rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in variants}
    p_abn_det: dict[str, dict[str, float]] = {name: {} for name in variants}
    p_abn_clf: dict[str, dict[str, float]] = {name: {} for name in classifiers}
    t0 = time.perf_counter()
    for k, iid in enumerate(data["val"]):
        radiographs = ref.read(data["sources"][iid], iid)
        inputs = ref.prepare(radiographs)
        for name, clf in classifiers.items():
            p_abn_clf[name][iid] = clf.classify(inputs[clf.meta.chain]).p_abnormal
        if iid not in det_ids:
            continue
        for name, det in variants.items():
            pred = Predictor([det]).predict_read(radiographs, prepared=inputs)
            d = pred.detections
            rows[name] += [(iid, lab, *box, "", s) for lab, s, box in zip(d.labels, d.scores.tolist(), d.boxes.tolist(),
                                                                          strict=True)]
            rows[name].append((iid, NO_FINDING, *NO_FINDING_BOX, "", pred.no_finding_score))
            p_abn_det[name][iid] = 1.0 - pred.no_finding_score
        if (k + 1) % 25 == 0:
            log(f"  fold 0: {k + 1}/{len(data['val'])} images, {time.perf_counter() - t0:.0f} s")
    truth, images = data["truth"], data["det_val"]
    preds = {name: Annotations.from_rows(truth.images, r) for name, r in rows.items()}
    y_det = np.array([any(lab != NO_FINDING for lab in truth.label[truth.image_id == i].tolist()) for i in images])
    s_det = {name: np.array([p[i] for i in images]) for name, p in p_abn_det.items()}
    maps = {name: weighted_map(truth, preds[name], images) for name in variants}
    det_map_ci = paired(len(images), lambda w, name: maps[name](w), list(variants), resamples)
    det_auc_ci = paired(len(images), lambda w, name: weighted_auc(w, y_det, s_det[name]), list(variants), resamples)
    y_clf = np.array([data["abnormal"][i] for i in data["val"]], dtype=bool)
    s_clf = {name: np.array([p[i] for i in data["val"]]) for name, p in p_abn_clf.items()}
    clf_auc_ci = paired(len(y_clf), lambda w, name: weighted_auc(w, y_clf, s_clf[name]), list(classifiers), resamples)
    det = {"images": len(images), "boxes": int((truth.label != NO_FINDING).sum()), "variants": {}}
    for name, model in variants.items():
        det["variants"][name] = {
            "map": kaggle_map(truth, preds[name]).map,
            "auc": roc_auc(y_det, s_det[name]),
            "ci95": {"map": det_map_ci.get(name), "auc": det_auc_ci.get(name)},
            **timing(model),
        }
    clf = {"images": len(y_clf), "abnormal": int(y_clf.sum()), "variants": {}}
    for name, model in classifiers.items():
        clf["variants"][name] = {"auc": roc_auc(y_clf, s_clf[name]), "ci95": {"auc": clf_auc_ci.get(name)},
                                 **timing(model)}
    return {"detector": det, "classifier": clf}


def score_lungs(lungseg: Path, variants: dict[str, Any], resamples: int, limit: int = 0) -> dict[str, Any]:
    """Lungs variants on eval_nc, Dice at the original size through ``docs/lungs/evaluate_lungs.py``'s path."""
    spec = importlib.util.spec_from_file_location("evaluate_lungs", REPO / "docs" / "lungs" / "evaluate_lungs.py")
    assert spec is not None and spec.loader is not None
    ev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ev)
    from thoracic.train.lungs import load_pairs

    pairs = load_pairs(lungseg, "eval_nc")[: limit or None]
    dice: dict[str, list[float]] = {name: [] for name in variants}
    for k, pair in enumerate(pairs):  # one image at a time through every variant: the same load for all
        for name, seg in variants.items():
            rows, _ = ev.score(seg, [pair])
            dice[name].append(rows[0]["dice"])
        if (k + 1) % 25 == 0:
            log(f"  eval_nc: {k + 1}/{len(pairs)} images")
    d = {name: np.asarray(v) for name, v in dice.items()}
    ci = paired(len(pairs), lambda w, name: (w @ d[name]) / len(pairs), list(variants), resamples)
    return {"images": len(pairs), "variants": {
        name: {"dice": float(d[name].mean()), "worse_images": int((d[name] < d[REFERENCE]).sum()),
               "ci95": {"dice": ci.get(name)}, **timing(variants[name])} for name in variants}}


def timing(model: Any) -> dict[str, Any]:
    s = model.session
    return {"backend": model.backend, "sha256": model.sha256, "calls": s.calls,
            "ms_per_call": round(1000 * s.seconds / max(1, s.calls), 2)}


# --- verdicts --------------------------------------------------------------------------------------
def verdicts(kind: str, result: dict[str, Any]) -> dict[str, Any]:
    """Each candidate's differences from the reference and whether it passed the issue's rule."""
    ref = result["variants"][REFERENCE]
    out = {}
    for name, v in result["variants"].items():
        if name not in CANDIDATES:
            continue
        diffs = {m: v[m] - ref[m] for m in CRITERIA[kind]}
        out[name] = {
            "precision": CANDIDATES[name][0], "backend": CANDIDATES[name][1],
            "difference": {m: round(x, 6) for m, x in diffs.items()},
            "ci95": {m: [round(x, 6) for x in v["ci95"][m]] if v["ci95"][m] else None for m in CRITERIA[kind]},
            "passed": all(diffs[m] >= -LIMITS[m] for m in CRITERIA[kind]),
        }
    return out


def fmt_ci(ci: Any) -> str:
    return f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "-"


def table(kind: str, result: dict[str, Any], verdict: dict[str, Any]) -> str:
    metrics = CRITERIA[kind]
    ref = result["variants"][REFERENCE]
    head = ["variant", *[m for m in metrics], *[f"{m} difference [95% CI]" for m in metrics], "ms per call", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, v in result["variants"].items():
        diff = [f"{v[m] - ref[m]:+.4f} {fmt_ci(v['ci95'][m])}" if name != REFERENCE else "reference" for m in metrics]
        if name not in verdict:
            verdict_text = "-"
        elif not verdict[name]["passed"]:
            verdict_text = "rejected"
        else:  # an int8 file is not shipped: within the limits, but nothing uses it
            verdict_text = "**accepted**" if verdict[name]["precision"] != "int8" else "within limits (file not shipped)"
        lines.append("| " + " | ".join([name, *[f"{v[m]:.4f}" for m in metrics], *diff,
                                        f"{v['ms_per_call']:.1f} ({v['ms_per_call'] / ref['ms_per_call']:.2f})",
                                        verdict_text]) + " |")
    return "\n".join(lines)


def cpu_name() -> str:
    """The CPU's model name and the bf16/int8 instructions it reports (Linux), for the record."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    wanted = [f for f in ("avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni") if f in flags]
    return f"{name or platform.machine()}, {os.cpu_count()} cores ({' '.join(wanted) or 'no bf16/VNNI'})"


def write_checks(path: Path, results: dict[str, Any], all_verdicts: dict[str, Any], about: dict[str, Any]) -> None:
    """The verdicts into ``precision.json``: per model file sha256, per precision (``runtime.PRECISION_CHECKS``).

    Each run records its numbers and ``within_limits`` (the issue's rule). ``passed`` (what the
    loader follows) is ``within_limits`` for bf16, which runs the shipped file; int8 runs a
    quantized file that is not shipped, so its runs are recorded per back-end and it never passes.
    Entries of other model files are kept.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = {}
    doc["about"] = ("Accuracy checks of reduced precision, written by bench/precision_check.py (issue 18): per model "
                    "file sha256, per precision, the paired differences from ONNX Runtime float32 on the validation "
                    "images and whether they stay within 'limits'. --precision auto uses a precision only where "
                    "'passed' is true; int8 never passes here: its quantized files are not shipped.")
    doc["limits"] = dict(LIMITS)
    models = {}
    for kind, result in results.items():
        sha = result["variants"][REFERENCE]["sha256"]
        entry: dict[str, Any] = {"kind": kind, "file": f"{kind}.onnx", "images": result["images"],
                                 "reference": {m: round(result["variants"][REFERENCE][m], 6) for m in CRITERIA[kind]}}
        for name, v in all_verdicts[kind].items():
            precision, backend = v["precision"], v["backend"]
            run = {"within_limits": v["passed"], "measured": {m: round(result["variants"][name][m], 6) for m in CRITERIA[kind]},
                   "difference": v["difference"], "ci95": v["ci95"]}
            if precision == "int8":
                int8 = entry.setdefault("int8", {"passed": False, "shipped": False,
                                                 "quantized_sha256": result["variants"][name]["sha256"], "backends": {}})
                int8["backends"][backend] = run
            else:
                entry[precision] = {"passed": v["passed"], "backend": backend, **run}
        models[sha] = {**entry, **about}
    doc["models"] = {**{k: v for k, v in doc.get("models", {}).items() if k not in models}, **models}
    text = json.dumps(doc, indent=2) + "\n"
    text = re.sub(r"\[\s+([-+0-9.e]+),\s+([-+0-9.e]+)\s+\]", r"[\1, \2]", text)  # intervals on one line
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nih", default="../shared/data/nih", help="folder with images.csv, boxes.csv, images/")
    p.add_argument("--lungseg", default="../shared/data/lungseg", help="folder with pairs.csv, images/, masks/")
    p.add_argument("--out", default="/tmp/precision", help="work folder: the int8 files, results.json")
    p.add_argument("--models", nargs="+", default=["detector", "classifier", "lungs"],
                   choices=["detector", "classifier", "lungs"])
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="seed of the folds (the detector's: 0)")
    p.add_argument("--fold", type=int, default=0, help="the validation fold (the detector's: 0)")
    p.add_argument("--calibration", type=int, default=100, help="NIH training images for int8 calibration")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1, help="inference threads of every session")
    p.add_argument("--no-int8", action="store_true", help="skip int8")
    p.add_argument("--limit", type=int, default=0, help="only the first N images of each set (a quick try; no --write)")
    p.add_argument("--write", action="store_true", help="record the verdicts in src/thoracic/models/precision.json")
    args = p.parse_args(argv)
    if args.limit and args.write:
        p.error("--write needs every image: drop --limit")

    import onnxruntime

    from thoracic.models.registry import model_path
    from thoracic.models.runtime import PRECISION_CHECKS, import_openvino, openvino_available

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bf16 = has_bf16()
    versions = {"onnxruntime": onnxruntime.__version__,
                "openvino": import_openvino().__version__ if openvino_available() else None}
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=False).stdout.strip()
    except OSError:
        commit = ""
    log(f"{cpu_name()}, OpenVINO bf16 {'yes' if bf16 else 'no'}, "
        f"{versions}, load average {os.getloadavg()[0]:.2f}, thoracic {commit}")
    data = nih_fold(Path(args.nih), args.folds, args.seed, args.fold)
    if args.limit:
        data["val"] = data["val"][: args.limit]
        data["det_val"] = [i for i in data["det_val"] if i in set(data["val"])]
        data["truth"] = data["truth"].select_images(data["det_val"])
    log(f"fold {args.fold}: {len(data['val'])} images ({len(data['det_val'])} for the detector), "
        f"{len(data['train'])} training images")

    int8: dict[str, Path] = {}
    calib = calibration_ids(data["train"], args.calibration)
    if not args.no_int8:
        feeds: dict[str, list[dict[str, np.ndarray]]] = {}
        if {"detector", "classifier"} & set(args.models):
            log(f"calibration inputs: {len(calib)} NIH training images (detector, classifier)")
            feeds.update(calibrate_nih(data, calib, args.threads))
        if "lungs" in args.models:
            log(f"calibration inputs: {len(calib)} NIH training images (lungs)")
            feeds["lungs"] = calibrate_lungs(data, calib, args.threads)
        for kind in args.models:
            t0 = time.perf_counter()
            int8[kind] = quantize(model_path(kind), feeds[kind], out)
            log(f"{kind}: quantized in {time.perf_counter() - t0:.1f} s -> {int8[kind]}")
        feeds.clear()

    results: dict[str, Any] = {}
    if {"detector", "classifier"} & set(args.models):
        dets = load_variants("detector", model_path("detector"), int8.get("detector"), args.threads, bf16)
        clfs = load_variants("classifier", model_path("classifier"), int8.get("classifier"), args.threads, bf16)
        log(f"detector and classifier: {len(dets)} variants each on fold {args.fold}")
        both = score_detector(data, dets, clfs, args.resamples)
        results.update({k: v for k, v in both.items() if k in args.models})
    if "lungs" in args.models:
        segs = load_variants("lungs", model_path("lungs"), int8.get("lungs"), args.threads, bf16)
        log(f"lungs: {len(segs)} variants on eval_nc")
        results["lungs"] = score_lungs(Path(args.lungseg), segs, args.resamples, args.limit)

    command = ".venv/bin/python bench/precision_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    all_verdicts = {kind: verdicts(kind, r) for kind, r in results.items()}
    summary = {"command": command, "thoracic": commit, "cpu": cpu_name(), "versions": versions, "bf16": bf16, "limits": LIMITS,
               "calibration": calib if not args.no_int8 else [], "load_average_end": os.getloadavg(),
               "results": results, "verdicts": all_verdicts}
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    for kind, r in results.items():
        n = f"{r['images']} images" + (f", {r['boxes']} boxes" if "boxes" in r else "")
        print(f"\n### {kind} ({n})\n")
        print(table(kind, r, all_verdicts[kind]))
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; results: {out / 'results.json'}")
    if args.write:
        write_checks(PRECISION_CHECKS, results, all_verdicts, {
            "command": command, "thoracic": commit, "date": datetime.date.today().isoformat(), "cpu": cpu_name(),
            "versions": versions, "calibration": f"{len(calib)} NIH training images (folds other than {args.fold})"})
        print(f"wrote {PRECISION_CHECKS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
