"""Statistics of an annotation table: the numbers and figures of a data set's description.

- label distribution per class: boxes and images (the paper's Fig. 6);
- box area as a percentage of the image area per class (Fig. 7, box plots);
- abnormal vs normal images, finding boxes per image, readers per image;
- inter-reader agreement: for every image and every pair of its readers, same-class boxes are
  matched greedily one-to-one (highest IoU first, IoU > 0.4); per class,
  ``F1 = 2 * sum(matches) / sum(n_a + n_b)`` summed over all image/reader pairs (pairs where
  neither reader drew the class add nothing). The mean is the unweighted mean over classes.

:func:`compute_stats` needs only NumPy; :func:`write_stats` writes CSV/Markdown tables and, with
matplotlib (the ``data`` extra), PNG figures.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thoracic.boxes import box_iou
from thoracic.data.annotations import Annotations
from thoracic.data.fusion import image_groups
from thoracic.data.tables import PathLike
from thoracic.errors import MissingDependencyError
from thoracic.labels import FINDINGS

__all__ = ["Agreement", "ClassStats", "DatasetStats", "compute_stats", "greedy_matches", "reader_agreement", "write_stats"]


@dataclass(frozen=True)
class Agreement:
    """Pairwise agreement of readers on one class."""

    label: str
    matches: int
    boxes: int  # sum of n_a + n_b over the image/reader pairs
    pairs: int  # image/reader pairs where at least one reader drew the class

    @property
    def f1(self) -> float:
        return 2 * self.matches / self.boxes if self.boxes else math.nan


@dataclass(frozen=True)
class ClassStats:
    """Counts and box sizes of one finding."""

    class_id: int
    label: str
    boxes: int
    images: int
    area_pct: tuple[float, ...]  # every box's area as % of its image (images of known size)
    agreement: Agreement

    def area_quantiles(self) -> tuple[float, float, float]:
        if not self.area_pct:
            return (math.nan, math.nan, math.nan)
        q = np.percentile(np.asarray(self.area_pct), [25, 50, 75])
        return float(q[0]), float(q[1]), float(q[2])


@dataclass(frozen=True)
class DatasetStats:
    """Everything :func:`write_stats` reports."""

    name: str
    images: int
    abnormal: int
    normal: int
    unannotated: int
    finding_boxes: int
    classes: tuple[ClassStats, ...]
    boxes_per_image: tuple[tuple[int, int], ...]  # (finding boxes on an image, images), annotated images
    readers_per_image: tuple[tuple[int, int], ...]  # (readers, images), annotated images
    unknown_size: int  # images with boxes whose size is unknown (no area statistics)

    @property
    def mean_agreement(self) -> float:
        f = [c.agreement.f1 for c in self.classes if not math.isnan(c.agreement.f1)]
        return float(np.mean(f)) if f else math.nan


def greedy_matches(a: np.ndarray, b: np.ndarray, iou_thr: float = 0.4) -> int:
    """Greedy one-to-one matches of two box sets: highest IoU first, IoU above ``iou_thr``.

    >>> greedy_matches(np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([[1, 0, 11, 10]]))
    1
    """
    if len(a) == 0 or len(b) == 0:
        return 0
    iou = box_iou(a, b).ravel()
    order = np.argsort(-iou, kind="stable")
    used_a: set[int] = set()
    used_b: set[int] = set()
    n = 0
    for k in order:
        if iou[k] <= iou_thr:
            break
        i, j = divmod(int(k), len(b))
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        n += 1
    return n


def reader_agreement(ann: Annotations, iou_thr: float = 0.4) -> dict[str, Agreement]:
    """Pairwise inter-reader agreement per finding (see the module docstring)."""
    matches: Counter[str] = Counter()
    boxes: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    finding = ann.is_finding
    for idx in image_groups(ann).values():
        readers = sorted(set(ann.reader[idx].tolist()))
        if len(readers) < 2:
            continue
        f_idx = idx[finding[idx]]
        if not len(f_idx):
            continue
        lab = ann.label[f_idx]
        rd = ann.reader[f_idx]
        for label in sorted(set(lab.tolist())):
            per = {r: ann.boxes[f_idx[(lab == label) & (rd == r)]] for r in readers}
            for r1, r2 in itertools.combinations(readers, 2):
                na, nb = len(per[r1]), len(per[r2])
                if na + nb == 0:
                    continue
                matches[label] += greedy_matches(per[r1], per[r2], iou_thr)
                boxes[label] += na + nb
                pairs[label] += 1
    return {label: Agreement(label, matches[label], boxes[label], pairs[label]) for label in FINDINGS}


def compute_stats(ann: Annotations, *, iou_thr: float = 0.4) -> DatasetStats:
    """Counts, box sizes and reader agreement of a table (raw readers: do not fuse first)."""
    groups = image_groups(ann)
    finding = ann.is_finding
    abnormal = ann.abnormal_images()
    agreement = reader_agreement(ann, iou_thr)
    w = np.array([ann.images[i].width or np.nan for i in ann.image_id], dtype=np.float64)
    h = np.array([ann.images[i].height or np.nan for i in ann.image_id], dtype=np.float64)
    area = (ann.boxes[:, 2] - ann.boxes[:, 0]) * (ann.boxes[:, 3] - ann.boxes[:, 1]) / (w * h) * 100
    classes = []
    for cid, label in enumerate(FINDINGS):
        m = ann.label == label
        a = area[m]
        classes.append(
            ClassStats(cid, label, int(m.sum()), len(set(ann.image_id[m].tolist())),
                       tuple(float(v) for v in a[np.isfinite(a)]), agreement[label])
        )
    per_image = Counter(int(finding[idx].sum()) for idx in groups.values())
    readers = Counter(len(set(ann.reader[idx].tolist())) for idx in groups.values())
    unknown = {i for i in ann.image_id[finding].tolist() if not (ann.images[i].width and ann.images[i].height)}
    return DatasetStats(
        name=ann.name,
        images=len(ann.images),
        abnormal=len(abnormal),
        normal=len(groups) - len(abnormal),
        unannotated=len(ann.images) - len(groups),
        finding_boxes=int(finding.sum()),
        classes=tuple(classes),
        boxes_per_image=tuple(sorted(per_image.items())),
        readers_per_image=tuple(sorted(readers.items())),
        unknown_size=len(unknown),
    )


# --- writing ------------------------------------------------------------------------------------
def _fmt(v: float, digits: int = 3) -> str:
    return "" if math.isnan(v) else f"{v:.{digits}f}"


def _class_rows(stats: DatasetStats) -> list[dict[str, str | int]]:
    rows: list[dict[str, str | int]] = []
    for c in stats.classes:
        q1, med, q3 = c.area_quantiles()
        rows.append({
            "class_id": c.class_id, "label": c.label, "boxes": c.boxes, "images": c.images,
            "area_pct_q1": _fmt(q1), "area_pct_median": _fmt(med), "area_pct_q3": _fmt(q3),
            "agreement_f1": _fmt(c.agreement.f1), "agreement_pairs": c.agreement.pairs,
            "agreement_matches": c.agreement.matches, "agreement_boxes": c.agreement.boxes,
        })
    return rows


def _markdown(stats: DatasetStats) -> str:
    rows = _class_rows(stats)
    cols = list(rows[0])
    lines = [
        f"# Data set statistics: {stats.name or 'annotations'}",
        "",
        "Written by `thoracic dataset stats`. Boxes are counted per reader (not fused).",
        "",
        "| images | abnormal | normal | without annotation | finding boxes | mean reader agreement F1 |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {stats.images} | {stats.abnormal} | {stats.normal} | {stats.unannotated} | {stats.finding_boxes} | {_fmt(stats.mean_agreement)} |",
        "",
        "## Per class",
        "",
        "Area: box area as % of the image (quartiles). Agreement: pairwise F1 of same-class boxes of two readers "
        "on one image, greedy one-to-one matching at IoU > 0.4, F1 = 2·Σmatches / Σ(n_a + n_b) over all "
        "image/reader pairs where at least one of the two drew the class.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---:" if c not in ("label",) else "---" for c in cols) + "|",
    ]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    lines += ["", "## Finding boxes per annotated image (all readers)", "", "| boxes | images |", "|---:|---:|"]
    lines += [f"| {k} | {v} |" for k, v in stats.boxes_per_image]
    lines += ["", "## Readers per annotated image", "", "| readers | images |", "|---:|---:|"]
    lines += [f"| {k} | {v} |" for k, v in stats.readers_per_image]
    if stats.unknown_size:
        lines += ["", f"{stats.unknown_size} image(s) with boxes have no known size: no area statistics for them."]
    return "\n".join(lines) + "\n"


def write_stats(stats: DatasetStats, out: PathLike, *, figures: bool = True) -> list[Path]:
    """Write ``classes.csv``, ``distributions.csv``, ``stats.md`` and (with matplotlib) PNG figures.

    Raises
    ------
    MissingDependencyError
        ``figures=True`` without matplotlib.
    """
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    rows = _class_rows(stats)
    p = out_dir / "classes.csv"
    with p.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    written.append(p)
    p = out_dir / "distributions.csv"
    with p.open("w", newline="") as fh:
        w2 = csv.writer(fh)
        w2.writerow(["what", "value", "images"])
        w2.writerows(["images", k, v] for k, v in (("abnormal", stats.abnormal), ("normal", stats.normal), ("unannotated", stats.unannotated)))
        w2.writerows(["boxes_per_image", k, v] for k, v in stats.boxes_per_image)
        w2.writerows(["readers_per_image", k, v] for k, v in stats.readers_per_image)
    written.append(p)
    p = out_dir / "stats.md"
    p.write_text(_markdown(stats))
    written.append(p)
    if figures:
        written += _figures(stats, out_dir)
    return written


def _figures(stats: DatasetStats, out_dir: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise MissingDependencyError.for_feature("dataset figures", "matplotlib", "data") from err
    os.environ.setdefault("MPLBACKEND", "Agg")
    names = [c.label for c in stats.classes]
    paths = []

    def save(fig: Any, name: str) -> None:
        p = out_dir / name
        fig.tight_layout()
        fig.savefig(p, dpi=120, metadata={"Software": None})
        plt.close(fig)
        paths.append(p)

    fig, ax = plt.subplots(figsize=(8, 5))
    y = np.arange(len(names))
    ax.barh(y - 0.2, [c.boxes for c in stats.classes], 0.4, label="boxes (all readers)")
    ax.barh(y + 0.2, [c.images for c in stats.classes], 0.4, label="images")
    for yi, c in zip(y, stats.classes, strict=True):
        ax.text(c.boxes, yi - 0.2, f" {c.boxes}", va="center", fontsize=7)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("count")
    ax.set_title(f"Label distribution ({stats.name or 'annotations'})")
    ax.legend(loc="lower right")
    save(fig, "label_distribution.png")

    fig, ax = plt.subplots(figsize=(9, 5))
    data = [c.area_pct if c.area_pct else (math.nan,) for c in stats.classes]
    ax.boxplot(data, tick_labels=names, showfliers=True, flierprops={"markersize": 2, "alpha": 0.3})
    ax.set_yscale("log")
    ax.set_ylabel("box area, % of the image (log scale)")
    ax.set_title("Box area per class")
    ax.tick_params(axis="x", rotation=60)
    save(fig, "box_area.png")

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    ax = axes[0]
    kinds = [("abnormal", stats.abnormal), ("normal", stats.normal)] + ([("unannotated", stats.unannotated)] if stats.unannotated else [])
    ax.bar([k for k, _ in kinds], [v for _, v in kinds], color=["tab:red", "tab:green", "tab:gray"][: len(kinds)])
    for i, (_, v) in enumerate(kinds):
        ax.text(i, v, str(v), ha="center", va="bottom")
    ax.set_title("Images")
    ax = axes[1]
    ax.bar([k for k, _ in stats.boxes_per_image], [v for _, v in stats.boxes_per_image])
    ax.set_yscale("log")
    ax.set_xlabel("finding boxes on the image (all readers)")
    ax.set_ylabel("images")
    ax.set_title("Boxes per image")
    ax = axes[2]
    ax.bar([str(k) for k, _ in stats.readers_per_image], [v for _, v in stats.readers_per_image])
    ax.set_xlabel("readers")
    ax.set_ylabel("images")
    ax.set_title("Readers per image")
    save(fig, "images.png")

    fig, ax = plt.subplots(figsize=(8, 5))
    f1 = [c.agreement.f1 for c in stats.classes]
    ax.barh(y, [0 if math.isnan(v) else v for v in f1])
    for yi, f in zip(y, f1, strict=True):
        ax.text(0 if math.isnan(f) else f, float(yi), f" {_fmt(f, 2)}", va="center", fontsize=8)
    ax.axvline(stats.mean_agreement, color="k", linestyle="--", label=f"mean {_fmt(stats.mean_agreement, 2)}")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("pairwise reader F1 (same class, IoU > 0.4)")
    ax.set_title("Inter-reader agreement")
    ax.legend(loc="lower right")
    save(fig, "agreement.png")
    return paths
