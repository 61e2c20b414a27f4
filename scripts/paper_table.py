#!/usr/bin/env python3
"""The paper's table (issue 15): every row on the held-out test fold, every choice on the CV folds.

Takes finished cross-validations of ``thoracic train cv ... --test-fold 0`` (one folder per input
chain, each named on the command line as ``NAME=DIR``), the NIH tables they were trained on and the
normal/abnormal classifier, and measures on the test fold, with the ``thoracic`` commands::

    scripts/paper_table.py plain512=runs/paper384/plain512 clahe512=runs/paper384/clahe512 \\
        lungroi512clahe=runs/paper384/lungroi512clahe \\
        --nih ../shared/data/nih/images.csv ../shared/data/nih/boxes.csv \\
        --chestxdet ../shared/data/nih/chestxdet_boxes.csv --out runs/paper-table

Rows, in order (``ROWS`` names the expected input rows; any other ``NAME`` is one more row):

1. one row per input (``plain512``: the plain display chain at 512; ``clahe512``: + CLAHE;
   ``lungroi512clahe``: the lung-ROI crop to 512 + CLAHE, the paper's input; ``1024``: a chain
   trained at 1024): its CV models one by one on the test fold, mean +- SD, with the bootstrap
   interval of the mean (:func:`thoracic.evaluate.evaluate_mean`), and its cross-validation's
   pooled out-of-fold Kaggle mAP from ``cv.json``;
2. for the input with the best pooled out-of-fold mAP (the only basis of the choice; the test
   fold chooses nothing): its single models (mean, SD, min-max), their WBF ensemble
   (``--models`` all CV models), + flip TTA (``--tta``), + the 2-class filter (``--classifier``,
   ``--low``).

Columns: Kaggle mAP@0.4, findings-only mAP, abnormal AUC, each with its bootstrap 95% interval over
the test images, the CV pooled mAP, and a second table with the AP of every finding.

The filter's threshold (``--low``): ``cv`` (default) chooses it on the CV images (the classifier's
own rule, the highest threshold that keeps ``--min-sensitivity`` of the abnormal images, an image
being abnormal when the truth has a finding box on it); ``stored`` takes the classifier's metadata
(the shipped classifier's was chosen on fold 0, which the table says); a number is used as given.

Outputs (``--out``): ``table.md`` (the tables, what is missing, the notes, the plots), ``table.json``
(every number), ``commands.md`` (every command in the order it ran, and whether this run ran it
or kept its earlier output), ``truth.csv`` (``thoracic dataset fuse`` of the tables, readers fused
as ``train cv`` fuses them), ``test_images.txt``, ``pred/`` (``thoracic predict``), ``eval/``
(``thoracic evaluate``), ``plots/`` (predicted vs actual boxes and images per finding at
``--score``: by default the best-F1 score of the finding boxes in the chosen input's out-of-fold
predictions, so chosen on the CV folds; the paper's Figs. 8-9; a grid of test images with true and predicted boxes) and
``logs/``. A step whose command and inputs (sha256 of each file) are unchanged is not run again;
an interrupted prediction continues (``--resume``). Missing or unfinished inputs are rows marked
missing, with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import itertools
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The plots' score when the CV gives none (:data:`thoracic.detect.clinical.DEFAULT_MIN_SCORE`).
DEFAULT_SCORE = 0.3
#: The inputs the paper's table compares, in its order: (row name, what it is).
ROWS = (
    ("plain512", "plain display chain at 512"),
    ("clahe512", "+ CLAHE"),
    ("lungroi512clahe", "lung-ROI crop to 512 + CLAHE (the paper's input)"),
    ("1024", "1024 input"),
)


class StepFailed(RuntimeError):
    """A ``thoracic`` command of the table failed (its log says why)."""


# --- the inputs --------------------------------------------------------------------------------
@dataclass
class ChainRun:
    """One finished (or not) ``thoracic train cv`` folder."""

    name: str
    path: Path | None
    config: dict[str, Any] = field(default_factory=dict)
    cv: dict[str, Any] = field(default_factory=dict)
    models: list[Path] = field(default_factory=list)
    missing: str | None = None

    @property
    def label(self) -> str:
        known = dict(ROWS)
        return known.get(self.name, self.name)

    @property
    def trained(self) -> str:
        d = self.config.get("detector", {})
        epochs = d.get("epochs", "?")
        return (f"{d.get('model', '?')}, {d.get('imgsz', '?')} px, {epochs} epoch{'' if epochs == 1 else 's'}, "
                f"chain `{self.config.get('chain', '?')}`")

    @property
    def cv_map(self) -> float | None:
        return self.cv.get("pooled", {}).get("kaggle_map")


def cv_score(run: ChainRun, iou: float = 0.4) -> tuple[float, dict[str, Any]]:
    """The plots' operating score, chosen on the CV folds only: the threshold with the highest F1 of
    the finding boxes (all findings together, matched by class at IoU above ``iou``) in ``run``'s
    pooled out-of-fold predictions, on the CV images with truth rows (those the Kaggle mAP scores).
    Returns the score and what it rests on."""
    from thoracic.evaluate import read_predictions, read_truth
    from thoracic.evaluate.detection import best_f1, match

    assert run.path is not None
    truth = read_truth(run.path / "truth.csv")
    preds = read_predictions(run.path / "oof.csv")
    scored = sorted(set(truth.image_id.tolist()))
    truth = truth.select_images(scored)
    truth = truth.subset(truth.is_finding)
    preds = preds.select_images(scored)
    preds = preds.subset(preds.is_finding)
    matched, _ = match(truth, preds, iou)
    best = best_f1(preds.score, matched, len(truth))
    if best["threshold"] is None:
        return DEFAULT_SCORE, {"rule": f"no out-of-fold finding box: the default {DEFAULT_SCORE:g}"}
    return float(best["threshold"]), {"input": run.name, "truth_boxes": len(truth), "f1": best["f1"],
                                      "tp": best["tp"], "fp": best["fp"]}


def load_chain(name: str, path: Path | None) -> ChainRun:
    """Read a CV folder; ``missing`` says why it cannot give a row yet."""
    run = ChainRun(name, path)
    if path is None:
        run.missing = "no cross-validation folder given"
        return run
    cfg_path = path / "cv_config.json"
    if not cfg_path.is_file():
        run.missing = f"{path} is not a `thoracic train cv` folder (no cv_config.json)"
        return run
    run.config = json.loads(cfg_path.read_text())
    if run.config.get("test_fold") is None:
        run.missing = f"{path} has no test fold (train cv without --test-fold)"
        return run
    folds = [k for k in range(int(run.config["folds"])) if k != run.config["test_fold"]]
    run.models = [path / "models" / f"fold_{k}.onnx" for k in folds]
    absent = [m.name for m in run.models if not m.is_file()]
    if absent or not (path / "cv.json").is_file():
        done = len(run.models) - len(absent)
        run.missing = (f"training not finished in {path}: {done} of {len(run.models)} fold models exported, "
                       f"{'no ' if not (path / 'cv.json').is_file() else ''}cv.json")
        return run
    run.cv = json.loads((path / "cv.json").read_text())
    return run


def check_same_split(runs: list[ChainRun]) -> None:
    """Every ready input must share the folds, the test fold and the readers' fusion."""
    ready = [r for r in runs if r.missing is None]
    keys = ("folds", "test_fold", "seed", "fuse", "fuse_iou")
    for r in ready[1:]:
        diff = [k for k in keys if r.config.get(k) != ready[0].config.get(k)]
        if diff:
            raise SystemExit(f"error: {r.path} and {ready[0].path} differ in {', '.join(diff)}: not one table")
        a, b = ((x.path / "test_images.txt").read_text().split() for x in (r, ready[0]))  # type: ignore[union-attr]
        if a != b:
            raise SystemExit(f"error: {r.path} and {ready[0].path} have other test images: not one table")


def check_truth(truth: Path, ready: list[ChainRun]) -> None:
    """The fused truth must be the one each cross-validation scored its images against (``truth.csv``)."""

    def rows(path: Path, ids: set[str] | None = None) -> list[tuple[str, ...]]:
        with path.open(newline="") as fh:
            return sorted((r["image_id"], r["label"], *(f"{float(r[c]):.2f}" if r[c] else "" for c in
                                                        ("x_min", "y_min", "x_max", "y_max")))
                          for r in csv.DictReader(fh) if ids is None or r["image_id"] in ids)

    for r in ready:
        theirs = rows(r.path / "truth.csv")  # type: ignore[operator]
        ours = rows(truth, {t[0] for t in theirs})
        if ours != theirs:
            differ = len({t[0] for t in set(ours) ^ set(theirs)})
            raise StepFailed(f"{truth} differs from {r.path}/truth.csv on {differ} of its images: are --nih and "
                             "--chestxdet the tables that cross-validation was trained on?")


# --- running and recording commands ------------------------------------------------------------
class Steps:
    """Runs each step once: a step whose command and input files are unchanged is kept."""

    def __init__(self, out: Path, quiet: bool = False) -> None:
        self.out = out
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.done: list[dict[str, str]] = []
        self.quiet = quiet

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def _key(self, command: list[str], inputs: list[Path]) -> dict[str, Any]:
        from thoracic.models.runtime import file_sha256

        return {"command": command, "inputs": {str(p): file_sha256(p) for p in inputs}}

    def _kept(self, step: str, key: dict[str, Any], outputs: list[Path]) -> bool:
        stamp = self.logs / f"{step}.stamp.json"
        if stamp.is_file() and json.loads(stamp.read_text()) == key and all(o.exists() for o in outputs):
            return True
        if stamp.is_file():  # other settings or inputs than last time: start the step again
            stamp.unlink()
            for o in outputs:
                if o.is_file():
                    o.unlink()
        return False

    def thoracic(self, step: str, argv: list[str], *, outputs: list[Path], inputs: list[Path]) -> None:
        """``thoracic ARGV`` in this process (``thoracic.cli.main.main``); its output goes to ``logs/STEP.log``."""
        from thoracic.cli.main import main as thoracic_main

        shown = "thoracic " + shlex.join(argv)
        key = self._key(argv, inputs)
        if self._kept(step, key, outputs):
            self.done.append({"step": step, "command": shown, "status": "kept"})
            return
        self._say(f"{step}: {shown}")
        log = self.logs / f"{step}.log"
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            rc = thoracic_main(argv)
        log.write_text(f"$ {shown}\n{buf.getvalue()}exit status {rc}\n")
        if rc != 0:
            raise StepFailed(f"{step} failed (exit status {rc}); see {log}:\n{buf.getvalue()[-2000:]}")
        (self.logs / f"{step}.stamp.json").write_text(json.dumps(key, indent=1) + "\n")
        self.done.append({"step": step, "command": shown, "status": "ran"})

    def library(self, step: str, what: str, params: dict[str, Any], run, *, outputs: list[Path],
                inputs: list[Path]) -> None:
        """A step this script computes with the library (``what`` says which call)."""
        key = self._key([what, json.dumps(params, sort_keys=True)], inputs)
        if self._kept(step, key, outputs):
            self.done.append({"step": step, "command": what, "status": "kept"})
            return
        self._say(f"{step}: {what}")
        run()
        (self.logs / f"{step}.stamp.json").write_text(json.dumps(key, indent=1) + "\n")
        self.done.append({"step": step, "command": what, "status": "ran"})


# --- the measurements --------------------------------------------------------------------------
@dataclass
class Setup:
    out: Path
    truth: Path
    test_list: Path
    images: Path
    bootstrap: int
    seed: int
    score: float
    threads: int


def predict_argv(s: Setup, models: list[Path], out_csv: Path, *, tta: bool = False,
                 classifier: Path | None = None, low: float | None = None) -> list[str]:
    argv = ["predict", str(s.images), "--image-list", str(s.test_list), "--out", str(out_csv),
            "--models", *map(str, models)]
    if classifier is None:
        argv.append("--no-classifier")
    else:
        argv += ["--classifier", str(classifier)] + (["--low", repr(low)] if low is not None else [])
    if tta:
        argv.append("--tta")
    return argv + ["--resume", "--quiet", "--threads", str(s.threads), "--workers", "1", "--readers", "1"]


def evaluate_argv(s: Setup, pred: Path, out_dir: Path) -> list[str]:
    return ["evaluate", "--pred", str(pred), "--truth", str(s.truth), "--fusion", "none",
            "--image-list", str(s.test_list), "--all-truth", "--bootstrap", str(s.bootstrap), "--seed", str(s.seed),
            "--no-coco", "--score-threshold", repr(s.score), "--out", str(out_dir)]


def measure(steps: Steps, s: Setup, step: str, models: list[Path], **predict: Any) -> dict[str, Any]:
    """Predict the test fold and score it; returns ``metrics.json``."""
    pred = s.out / "pred" / f"{step}.csv"
    pred.parent.mkdir(parents=True, exist_ok=True)
    extra = [predict["classifier"]] if predict.get("classifier") else []
    steps.thoracic(f"predict-{step}", predict_argv(s, models, pred, **predict),
                   outputs=[pred, pred.with_name(pred.stem + ".images.csv"), pred.with_name(pred.stem + ".settings.json")],
                   inputs=[*models, *extra, s.test_list])
    out = s.out / "eval" / step
    steps.thoracic(f"evaluate-{step}", evaluate_argv(s, pred, out), outputs=[out / "metrics.json"],
                   inputs=[pred, s.truth, s.test_list])
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["_pred"] = str(pred)
    return metrics


def _scoped(s: Setup, *groups: list[Path]) -> tuple[Any, list[list[Any]], Any]:
    """The truth and each group's prediction tables as ``thoracic evaluate --image-list TEST
    --all-truth`` scores them, and the evaluation settings of the table's steps."""
    from thoracic.data.selection import image_selection
    from thoracic.evaluate import EvaluationConfig, read_predictions, read_truth
    from thoracic.evaluate.scope import score_scope

    selection = image_selection(image_list=s.test_list)
    truth = read_truth(s.truth)
    scored, tables = truth, []
    for paths in groups:
        tables.append([])
        for p in paths:
            scope = score_scope(truth, read_predictions(p), selection=selection, all_truth=True)
            tables[-1].append(scope.preds)
            scored = scope.truth
    cfg = EvaluationConfig(bootstrap=s.bootstrap, seed=s.seed, score_threshold=s.score, coco=False)
    return scored, tables, cfg


def mean_of(steps: Steps, s: Setup, name: str, preds: list[Path]) -> dict[str, Any]:
    """:func:`thoracic.evaluate.evaluate_mean` of the single models' test predictions."""
    out = s.out / "eval" / f"{name}-single-mean.json"

    def run() -> None:
        from thoracic.evaluate import evaluate_mean

        scored, (members,), cfg = _scoped(s, preds)
        out.write_text(json.dumps(evaluate_mean(scored, members, cfg), indent=1, allow_nan=False) + "\n")

    what = (f"thoracic.evaluate.evaluate_mean(truth {s.truth.name} on {s.test_list.name}, "
            f"[{', '.join(p.name for p in preds)}], bootstrap={s.bootstrap}, seed={s.seed}) -> {out.name}")
    steps.library(f"mean-{name}", what, {"preds": [str(p) for p in preds]}, run, outputs=[out], inputs=[*preds, s.truth])
    return json.loads(out.read_text())


def difference_of(steps: Steps, s: Setup, name: str, a: list[Path], b: list[Path]) -> dict[str, Any]:
    """:func:`thoracic.evaluate.evaluate_difference` of two sets of test predictions (mean of ``a``
    minus mean of ``b``, paired on the same resamples of the test images)."""
    out = s.out / "eval" / f"diff-{name}.json"

    def run() -> None:
        from thoracic.evaluate import evaluate_difference

        scored, (side_a, side_b), cfg = _scoped(s, a, b)
        out.write_text(json.dumps(evaluate_difference(scored, side_a, side_b, cfg), indent=1, allow_nan=False) + "\n")

    what = (f"thoracic.evaluate.evaluate_difference(truth {s.truth.name} on {s.test_list.name}, "
            f"a=[{', '.join(p.name for p in a)}], b=[{', '.join(p.name for p in b)}], bootstrap={s.bootstrap}, "
            f"seed={s.seed}) -> {out.name}")
    steps.library(f"diff-{name}", what, {"a": [str(p) for p in a], "b": [str(p) for p in b]}, run, outputs=[out],
                  inputs=[*a, *b, s.truth])
    return json.loads(out.read_text())


def cv_p_abnormal(steps: Steps, s: Setup, classifier: Path, ids: list[str]) -> Path:
    """P(abnormal) of the CV images (not the test fold) by the classifier, with their truth."""
    out = s.out / "classifier_cv.csv"

    def run() -> None:
        from thoracic.classify import OnnxClassifier
        from thoracic.data.tables import find_images
        from thoracic.evaluate import read_truth
        from thoracic.labels import NO_FINDING

        truth = read_truth(s.truth)
        abnormal = {i for i, lab in zip(truth.image_id.tolist(), truth.label.tolist(), strict=True) if lab != NO_FINDING}
        files = find_images(s.images)
        clf = OnnxClassifier.load(classifier, threads=s.threads)
        rows = [(i, int(i in abnormal), clf.p_abnormal(files[i])) for i in ids]
        tmp = out.with_suffix(".part")
        with tmp.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image_id", "abnormal", "p_abnormal"])
            w.writerows([i, a, repr(p)] for i, a, p in rows)
        tmp.replace(out)

    what = (f"P(abnormal) of the {len(ids)} CV images: thoracic.classify.OnnxClassifier.load({classifier.name})"
            f".p_abnormal(image) -> {out.name}")
    steps.library("classifier-cv", what, {"ids": len(ids), "classifier": str(classifier)}, run, outputs=[out],
                  inputs=[classifier, s.truth])
    return out


def choose_filter_low(mode: str, classifier: Path, cv_table: Path | None, min_sensitivity: float,
                      test_fold: int) -> tuple[float, str]:
    """The 2-class filter's ``low`` and a sentence saying where it comes from."""
    if mode == "stored":
        from thoracic.classify import OnnxClassifier

        clf = OnnxClassifier.load(classifier, threads=1)
        val = (clf.meta.extra or {}).get("val_fold")
        said = f"the classifier's stored threshold {clf.low:.4f}"
        if val == test_fold:
            said += (f", chosen when it was trained, on its validation fold {val}: the test fold "
                     "(this row is not a clean test; `--low cv` chooses on the CV folds)")
        return float(clf.low), said
    if mode == "cv":
        import numpy as np

        from thoracic.train.classifier import choose_low

        if cv_table is None:
            raise ValueError("--low cv needs the CV images' P(abnormal)")
        with cv_table.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        y = np.array([int(r["abnormal"]) for r in rows])
        p = np.array([float(r["p_abnormal"]) for r in rows])
        low = choose_low(y, p, min_sensitivity)
        return low, (f"{low:.4f}, chosen on the {len(rows)} CV images ({int(y.sum())} with a finding box): the highest "
                     f"threshold keeping {min_sensitivity:g} of them (the classifier was trained on these folds, "
                     "so its scores there are in-sample)")
    return float(mode), f"{float(mode):g}, given with --low"


# --- the table ----------------------------------------------------------------------------------
def _f(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.3f}"


def _ci(v: Any) -> str:
    return "" if not v else f" [{v[0]:.3f}, {v[1]:.3f}]"


def row_from_metrics(m: dict[str, Any]) -> dict[str, Any]:
    ci = m.get("ci95") or {}
    return {
        "kaggle_map": m["map"], "kaggle_map_ci": ci.get("map"),
        "findings_map": m.get("findings_map"), "findings_map_ci": ci.get("findings_map"),
        "abnormal_auc": m["auc"]["abnormal"], "abnormal_auc_ci": (ci.get("auc") or {}).get("abnormal"),
        "ap": dict(m["ap"]), "images": m["images"],
    }


def row_from_mean(m: dict[str, Any]) -> dict[str, Any]:
    ci = m["ci95"]
    out: dict[str, Any] = {"images": m["images"], "members": m["members"], "ap": {k: v["mean"] for k, v in m["ap"].items()}}
    for key, src in (("kaggle_map", "map"), ("findings_map", "findings_map"), ("abnormal_auc", "auc_abnormal")):
        out[key] = m[src]["mean"]
        out[f"{key}_ci"] = ci.get(src)
        out[f"{key}_sd"] = m[src]["sd"]
        out[f"{key}_range"] = [m[src]["min"], m[src]["max"]]
        out[f"{key}_values"] = m[src]["values"]
    return out


def _cell(row: dict[str, Any], key: str) -> str:
    sd = row.get(f"{key}_sd")
    return _f(row.get(key)) + (f" ± {sd:.3f}" if sd is not None else "") + _ci(row.get(f"{key}_ci"))


def markdown(table: dict[str, Any]) -> str:
    rows = table["rows"]
    lines = [
        f"# The paper's table: test fold {table['test_fold']} ({table['images']} images), held out",
        "",
        ("Every number below is measured on the test fold, which chose nothing; the input the last rows build on "
         "was chosen by its cross-validation's pooled out-of-fold Kaggle mAP on the other folds "
         f"({table['choice']})."),
        "",
        ("| row | trained | test Kaggle mAP@0.4 [95% CI] | test findings-only mAP [95% CI] | test abnormal AUC [95% CI] "
         "| CV pooled Kaggle mAP@0.4 [95% CI] (out of fold) |"),
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r.get("missing"):
            lines.append(f"| {r['label']} | – | missing: {r['missing']} | | | |")
            continue
        cv = _f(r.get("cv_map")) + _ci(r.get("cv_map_ci")) if r.get("cv_map") is not None else "–"
        lines.append(f"| {r['label']} | {r['trained']} | {_cell(r, 'kaggle_map')} | {_cell(r, 'findings_map')} | "
                     f"{_cell(r, 'abnormal_auc')} | {cv} |")
    labels = table["classes"]
    lines += [
        "",
        ("± is the standard deviation over the single models; [ ] the percentile bootstrap 95% interval over the "
         f"test images ({table['bootstrap']} resamples, seed {table['seed']}; of the mean for the single-model rows)."),
        "",
        "AP per class on the test fold (single-model rows: the mean over the models):",
        "",
        "| row | " + " | ".join(labels) + " |",
        "| --- | " + " | ".join("---" for _ in labels) + " |",
    ]
    for r in rows:
        if not r.get("missing"):
            lines.append(f"| {r['label']} | " + " | ".join(_f(r["ap"].get(k)) for k in labels) + " |")
    if table.get("single_models"):
        lines += ["", f"The single models of `{table['chosen']}` on the test fold:", "",
                  "| model | Kaggle mAP@0.4 [95% CI] | findings-only mAP [95% CI] | abnormal AUC [95% CI] |",
                  "| --- | --- | --- | --- |"]
        for name, r in table["single_models"].items():
            lines.append(f"| {name} | {_cell(r, 'kaggle_map')} | {_cell(r, 'findings_map')} | {_cell(r, 'abnormal_auc')} |")
    if table.get("differences"):
        lines += ["", ("What each step adds, paired: both sides scored on the same bootstrap resamples of the test "
                       "images (the difference's 95% interval; in ( ) the share of resamples where the step scored "
                       "higher):"), "",
                  "| step | Δ Kaggle mAP@0.4 [95% CI] | Δ findings-only mAP [95% CI] | Δ abnormal AUC [95% CI] |",
                  "| --- | --- | --- | --- |"]
        for d in table["differences"]:
            cells = []
            for k in ("map", "findings_map", "auc_abnormal"):
                v = d[k]
                share = "" if v["above_zero"] is None else f" ({v['above_zero']:.0%})"
                sign = "+" if v["difference"] is not None and v["difference"] >= 0 else ""
                cells.append(f"{sign}{_f(v['difference'])}{_ci(v['ci'])}{share}")
            lines.append(f"| {d['label']} | " + " | ".join(cells) + " |")
    missing = [r for r in rows if r.get("missing")]
    if missing:
        lines += ["", "Missing rows:", ""] + [f"- {r['label']}: {r['missing']}" for r in missing]
    lines += ["", "Notes:", ""] + [f"- {n}" for n in table["notes"]]
    if table["plots"]:
        lines += ["", "Plots:", ""] + [f"![{p['title']}]({p['file']})" for p in table["plots"]]
    lines += ["", "Commands: [commands.md](commands.md).", ""]
    return "\n".join(lines)


def commands_md(steps: Steps, argv: list[str], test_from: Path | None) -> str:
    lines = ["# Commands of the paper's table", "", (f"Run in `{Path.cwd()}` (relative paths start there). All of it "
             "(re-running keeps every step whose command and inputs are unchanged):"), "", "```sh",
             "scripts/paper_table.py " + shlex.join(argv), "```", ""]
    if test_from is not None:
        lines += [f"`test_images.txt` is a copy of `{test_from}` (the test fold of `thoracic train cv --test-fold`).", ""]
    lines += ["Each step, in the order it ran (`kept`: its output of an earlier run was reused):", ""]
    for d in steps.done:
        lines += [f"- `{d['step']}` ({d['status']}):", "", "  ```sh", f"  {d['command']}", "  ```", ""]
    return "\n".join(lines)


# --- plots --------------------------------------------------------------------------------------
def plots(s: Setup, rows: list[tuple[str, str, dict[str, Any]]], samples: int) -> list[dict[str, str]]:
    """Predicted vs actual per finding for each measured row, and a grid of test images for the last."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from PIL import Image

    from thoracic.evaluate import read_predictions, read_truth
    from thoracic.report.overlays import sample_overlays
    from thoracic.report.plots import distribution_plot

    folder = s.out / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    made: list[dict[str, str]] = []
    for key, title, metrics in rows:
        path = folder / f"predicted_vs_actual_{key}.png"
        path.write_bytes(distribution_plot(metrics))
        made.append({"file": f"plots/{path.name}", "title": f"{title}: predicted (score >= {s.score:.3g}) vs actual, "
                     "boxes and images per class, test fold"})
    if not rows:
        return made
    key, title, metrics = rows[-1]
    test = set(s.test_list.read_text().split())
    truth = read_truth(s.truth).select_images(sorted(test))
    shots, _ = sample_overlays(truth, read_predictions(metrics["_pred"]), s.images, samples, s.score)
    if shots:
        cols = min(4, len(shots))
        nrows = -(-len(shots) // cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 4.3 * nrows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, (image_id, png) in zip(axes.flat, shots, strict=False):
            ax.imshow(Image.open(io.BytesIO(png)))
            ax.set_title(image_id, fontsize=9)
        fig.suptitle(f"{title}: truth green, predictions red (score >= {s.score:.3g})", fontsize=11)
        fig.tight_layout()
        path = folder / f"examples_{key}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        made.append({"file": f"plots/{path.name}", "title": f"{title}: {len(shots)} test images, the busiest first"})
    return made


# --- main ---------------------------------------------------------------------------------------
def parse_pair(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name, Path(path)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("chains", nargs="+", type=parse_pair, metavar="NAME=DIR",
                   help=f"a `thoracic train cv --test-fold K` folder and its row name (expected: {', '.join(n for n, _ in ROWS)})")
    p.add_argument("--nih", nargs=2, required=True, metavar=("IMAGES_CSV", "BOXES_CSV"), help="the NIH tables trained on")
    p.add_argument("--chestxdet", default=None, help="ChestX-Det's boxes, when the CV was trained with them")
    p.add_argument("--images", default=None, help="the image folder (default: images/ beside IMAGES_CSV)")
    p.add_argument("--classifier", default=None, help="the 2-class filter's classifier (default: the shipped one)")
    p.add_argument("--low", default="cv", help="the filter's threshold: cv (default: chosen on the CV images), "
                                                "stored (the classifier's metadata) or a number")
    p.add_argument("--min-sensitivity", type=float, default=0.95, help="with --low cv: abnormal CV images kept (0.95)")
    p.add_argument("--score", default="cv",
                   help="operating score of the plots: cv (default: the best-F1 score of the finding boxes in the "
                        "chosen input's out-of-fold predictions, CV folds only) or a number")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the test images (1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (1)")
    p.add_argument("--samples", type=int, default=12, help="test images in the examples grid (12)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = p.parse_args(argv)

    from thoracic.labels import LABELS
    from thoracic.models.registry import model_path

    if args.score != "cv":
        try:
            float(args.score)
        except ValueError:
            p.error(f"--score must be cv or a number, got {args.score!r}")
    if args.low not in ("cv", "stored"):
        try:
            float(args.low)
        except ValueError:
            p.error(f"--low must be cv, stored or a number, got {args.low!r}")
    names = [n for n, _ in args.chains]
    if len(set(names)) != len(names):
        p.error("each row name once")
    given = dict(args.chains)
    order = [n for n, _ in ROWS] + [n for n in names if n not in dict(ROWS)]
    runs = [load_chain(n, given.get(n)) for n in order]
    check_same_split(runs)
    ready = [r for r in runs if r.missing is None]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = Steps(out, args.quiet)
    notes: list[str] = []
    score = DEFAULT_SCORE if args.score == "cv" else float(args.score)
    if args.score == "cv" and ready:
        chosen = max(ready, key=lambda r: r.cv_map if r.cv_map is not None else -1.0)
        score, basis = cv_score(chosen)
        notes.append(f"plots: boxes at score >= {score:.3g}, the best-F1 score of all finding boxes in "
                     f"`{chosen.name}`'s out-of-fold predictions (CV folds only: {basis['tp']} of "
                     f"{basis['truth_boxes']} truth boxes found, {basis['fp']} false, F1 {basis['f1']:.3f}); the "
                     "ensemble's WBF averages scores over its models, so its boxes score lower than a single model's"
                     if "input" in basis else f"plots: {basis['rule']}")
    classifier = Path(args.classifier) if args.classifier else model_path("classifier")
    images = Path(args.images) if args.images else Path(args.nih[0]).parent / "images"
    table: dict[str, Any] = {"rows": [], "notes": notes, "plots": [], "bootstrap": args.bootstrap, "seed": args.seed,
                             "test_fold": None, "images": 0, "choice": "no input is ready", "chosen": None,
                             "classes": [], "score": score}
    status = 1
    try:
        if ready:
            status = 0
            first = ready[0]
            cfg = first.config
            table["test_fold"] = cfg["test_fold"]
            test_list = out / "test_images.txt"
            text = (first.path / "test_images.txt").read_text()  # type: ignore[operator]
            if not test_list.is_file() or test_list.read_text() != text:
                test_list.write_text(text)
            truth = out / "truth.csv"
            method = cfg.get("fuse", "auto")
            method = ("wbf" if args.chestxdet else "all") if method == "auto" else ("all" if method == "none" else method)
            fuse = ["dataset", "fuse", "--nih", *args.nih, *(["--chestxdet", args.chestxdet] if args.chestxdet else []),
                    "--method", method, "--iou-thr", repr(float(cfg.get("fuse_iou", 0.4))), "--out", str(truth)]
            steps.thoracic("truth", fuse, outputs=[truth],
                           inputs=[Path(x) for x in [*args.nih, *([args.chestxdet] if args.chestxdet else [])]])
            check_truth(truth, ready)
            s = Setup(out, truth, test_list, images, args.bootstrap, args.seed, score, args.threads)
            measured = _measure_all(steps, s, runs, ready, table, notes, classifier, args)
            present: set[str] = set()
            for r in table["rows"]:
                present |= set(r.get("ap", {}))
            table["classes"] = [lab for lab in LABELS if lab in present]
            table["plots"] = plots(s, measured, args.samples)
        else:
            notes.append("no input is ready: every row is missing")
    except StepFailed as err:
        print(f"error: {err}", file=sys.stderr)
        status = 2
    if not ready:
        table["rows"] = [{"name": r.name, "label": r.label, "missing": r.missing} for r in runs]
    missing = [r for r in table["rows"] if r.get("missing")]
    (out / "table.json").write_text(json.dumps(table, indent=1, allow_nan=False) + "\n")
    (out / "table.md").write_text(markdown(table))
    test_from = ready[0].path / "test_images.txt" if ready and ready[0].path is not None else None
    (out / "commands.md").write_text(commands_md(steps, argv, test_from))
    print(f"written: {out / 'table.md'}, {out / 'table.json'}, {out / 'commands.md'}")
    for r in missing:
        print(f"missing row: {r['label']}: {r['missing']}")
    return status


def _measure_all(steps: Steps, s: Setup, runs: list[ChainRun], ready: list[ChainRun], table: dict[str, Any],
                 notes: list[str], classifier: Path, args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """Every row; returns the measured (key, title, metrics) of the rows that have one prediction file."""
    cfg = ready[0].config
    single_preds: dict[str, list[Path]] = {}
    for r in runs:
        if r.missing:
            table["rows"].append({"name": r.name, "label": r.label, "missing": r.missing})
            continue
        preds, singles = [], {}
        single_preds[r.name] = preds
        for k, model in zip([k for k in range(cfg["folds"]) if k != cfg["test_fold"]], r.models, strict=True):
            m = measure(steps, s, f"{r.name}-fold{k}", [model])
            preds.append(Path(m["_pred"]))
            singles[f"{r.name} fold {k} model"] = row_from_metrics(m)
        mean = row_from_mean(mean_of(steps, s, r.name, preds))
        pooled = r.cv.get("pooled", {})
        row = {"name": r.name, "label": f"{r.label} (`{r.name}`; {len(preds)} CV models, mean)", "trained": r.trained,
               **mean, "cv_map": pooled.get("kaggle_map"), "cv_map_ci": (pooled.get("ci") or {}).get("kaggle_map"),
               "cv_images": pooled.get("images"), "singles": singles}
        table["rows"].append(row)
        table["images"] = row["images"]
    best = max(ready, key=lambda r: (r.cv_map if r.cv_map is not None else -1.0))
    table["chosen"] = best.name
    table["choice"] = "; ".join(f"`{r.name}` {_f(r.cv_map)}" for r in ready) + f": `{best.name}`"
    chosen_row = next(r for r in table["rows"] if r.get("name") == best.name)
    table["single_models"] = chosen_row["singles"]
    sm = dict(chosen_row)
    lo, hi = chosen_row["kaggle_map_range"]
    sm.update(name="single", label=(f"single models of `{best.name}` (mean ± SD of {chosen_row['members']}; "
                                    f"Kaggle mAP from {_f(lo)} to {_f(hi)})"), cv_map=None, cv_map_ci=None)
    table["rows"].append(sm)
    measured = []
    trained = best.trained
    for key, title, extra in (("ensemble", f"their WBF ensemble ({len(best.models)} models)", {}),
                              ("ensemble-tta", "+ flip TTA", {"tta": True})):
        m = measure(steps, s, f"{best.name}-{key}", best.models, **extra)
        table["rows"].append({"name": key, "label": title, "trained": trained, **row_from_metrics(m)})
        measured.append((f"{best.name}-{key}", f"{best.name} {title}", m))
    with (best.path / "folds.csv").open(newline="") as fh:  # type: ignore[operator]
        cv_ids = [rec["image_id"] for rec in csv.DictReader(fh) if int(rec["fold"]) != cfg["test_fold"]]
    cv_table = cv_p_abnormal(steps, s, classifier, sorted(cv_ids)) if args.low == "cv" else None
    low, said = choose_filter_low(args.low, classifier, cv_table, args.min_sensitivity, cfg["test_fold"])
    notes.append(f"2-class filter: classifier `{classifier.name}`, low = {said}.")
    m = measure(steps, s, f"{best.name}-ensemble-tta-filter", best.models, tta=True, classifier=classifier, low=low)
    table["rows"].append({"name": "filter", "label": f"+ the 2-class filter (`{classifier.name}`, low {low:.4f})",
                          "trained": trained, **row_from_metrics(m)})
    measured.append((f"{best.name}-ensemble-tta-filter", f"{best.name} ensemble + TTA + filter", m))
    # what each step adds, paired on the same resamples: one input against the one before it, then
    # the ensemble against its single models, TTA against no TTA, the filter against no filter
    pred = {key.removeprefix(f"{best.name}-"): Path(mm["_pred"]) for key, _, mm in measured}
    inputs = [r.name for r in runs if r.name in single_preds]
    pairs = [(f"{x}-vs-{y}", f"`{x}` against `{y}` (mean of the CV models each)", single_preds[x], single_preds[y])
             for y, x in itertools.pairwise(inputs)]
    pairs += [
        ("ensemble-vs-single", f"the WBF ensemble against the mean of its {len(best.models)} single models",
         [pred["ensemble"]], single_preds[best.name]),
        ("tta-vs-ensemble", "+ flip TTA against the ensemble", [pred["ensemble-tta"]], [pred["ensemble"]]),
        ("filter-vs-tta", "+ the 2-class filter against the ensemble + TTA", [pred["ensemble-tta-filter"]],
         [pred["ensemble-tta"]]),
    ]
    table["differences"] = []
    for key, label, a, b in pairs:
        d = difference_of(steps, s, key, a, b)
        table["differences"].append({"name": key, "label": label, **{
            k: {"difference": (d.get(k) or {}).get("difference"), "ci": d["ci95"].get(k),
                "above_zero": (d["ci95"].get("resamples_above_zero") or {}).get(k)}
            for k in ("map", "findings_map", "auc_abnormal")}})
    truth_note = ("truth: `thoracic dataset fuse` of the tables, readers fused as `train cv` fused them "
                  f"({'WBF at IoU ' + str(cfg.get('fuse_iou')) if args.chestxdet else 'one reader, not fused'}); "
                  "an image whose NIH labels name a finding but that has no box counts as normal, as in the CV scores")
    notes += [
        f"test fold {cfg['test_fold']} of {cfg['folds']} (seed {cfg['seed']}): {table['images']} images; {truth_note}.",
        ("the CV column is each input's pooled out-of-fold score on the other folds (from its cv.json); the rows after "
         "the inputs have no CV counterpart (–)."),
    ]
    if args.score != "cv":
        notes.append(f"plots: predicted boxes at score >= {s.score:g} (--score; not chosen on the test fold).")
    det = [r.config.get("detector", {}) for r in ready]
    sizes = sorted({int(d.get("imgsz", 0)) for d in det})
    epochs = sorted({int(d.get("epochs", 0)) for d in det})
    devices = sorted({str(d.get("device", "?")) for d in det})
    said = (f"trained at {' or '.join(map(str, sizes))} px for {' or '.join(map(str, epochs))} epoch(s) on "
            f"{' or '.join(devices)} (each row's `trained` column)")
    if min(sizes) < 512:
        said += ("; smaller than the paper's 512 px input: without a GPU, issue 15 allows 384 px with fewer epochs, "
                 "so these rows compare the methods at that size, not the paper's numbers")
    notes.append(said + ".")
    return measured


if __name__ == "__main__":
    sys.exit(main())
