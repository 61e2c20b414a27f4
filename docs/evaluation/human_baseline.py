"""Compute the human baseline of docs/evaluation/human_baseline.md from the real VinBigData table.

    python docs/evaluation/human_baseline.py /work/shared/data/vinbigdata/train.csv.gz docs/evaluation

Each reader (rad_id) is scored against the weighted box fusion of the other readers of the same
images: precision, recall and F1 at IoU > 0.4 per class. Writes human_baseline.{json,csv,md}.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

from thoracic.labels import LABELS
from thoracic.evaluate import human_baseline, read_truth

TOP_READERS = 5


def _f(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def main(train_csv: str, out: str) -> None:
    start = time.perf_counter()
    table = read_truth(train_csv)
    result = human_baseline(table, iou=0.4)
    seconds = time.perf_counter() - start
    out_dir = Path(out)
    data = result.to_dict()
    data["source"] = Path(train_csv).name
    data["rows"] = len(table)
    data["problems"] = [str(p) for p in table.problems]
    (out_dir / "human_baseline.json").write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    keys = [*LABELS, "all findings"]
    with open(out_dir / "human_baseline.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["reader", "images", "label", "tp", "fp", "fn", "precision", "recall", "f1"])
        for reader, rows in [("all", result.overall), *result.readers.items()]:
            n = sum(result.images.values()) if reader == "all" else result.images[reader]
            for lab in keys:
                r = rows[lab]
                w.writerow([reader, n, lab, r["tp"], r["fp"], r["fn"], *("" if r[k] is None else f"{r[k]:.4f}" for k in ("precision", "recall", "f1"))])
    top = sorted(result.images, key=lambda r: (-result.images[r], r))[:TOP_READERS]
    lines = [
        "# Human baseline: each VinBigData reader against the fusion of the other readers",
        "",
        f"Source: the Kaggle VinBigData `train.csv` ({len(table)} rows, {len(table.images)} images, "
        f"{len(result.readers)} readers), the real table. Each reader's statements on an image are scored against "
        "the weighted box fusion (`thoracic.data.fusion.fuse_readers`, method `wbf`, IoU 0.4) of the other readers "
        "of that image; a reader box matches a fused box of its class at IoU > 0.4, each fused box at most once. "
        "\"No finding\" is a class (box 0 0 1 1): a reader saying \"No finding\" where the others fused to "
        "\"No finding\" is a true positive. Readers give no scores, so this is precision, recall and F1, not AP.",
        "",
        f"Counts are summed over all {sum(result.images.values())} (reader, image) pairs. "
        f"Computed in {seconds:.0f} s with:",
        "",
        "```sh",
        f"python docs/evaluation/human_baseline.py {train_csv} docs/evaluation",
        "```",
        "",
        "## All readers",
        "",
        "| class | TP | FP | FN | precision | recall | F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for lab in keys:
        r = result.overall[lab]
        lines.append(f"| {lab} | {r['tp']} | {r['fp']} | {r['fn']} | {_f(r['precision'])} | {_f(r['recall'])} | {_f(r['f1'])} |")
    lines += ["", f"## The {TOP_READERS} most active readers (F1 per class)", "",
              "| class | " + " | ".join(f"{r} ({result.images[r]} images)" for r in top) + " |",
              "|---|" + "---|" * len(top)]
    for lab in keys:
        lines.append(f"| {lab} | " + " | ".join(_f(result.readers[r][lab]["f1"]) for r in top) + " |")
    said: dict[tuple[str, str], set[bool]] = {}
    for image, label, reader in zip(table.image_id.tolist(), table.label.tolist(), table.reader.tolist()):
        said.setdefault((image, reader), set()).add(label == "No finding")
    per_image: dict[str, set[frozenset[bool]]] = {}
    for (image, _), v in said.items():
        per_image.setdefault(image, set()).add(frozenset(v))
    split = sum(len(v) > 1 for v in per_image.values())
    normal_only = sorted(r for r in result.readers if result.readers[r]["all findings"]["tp"] + result.readers[r]["all findings"]["fp"] == 0)
    lines += [
        "",
        "## Reading this table",
        "",
        f"- \"No finding\" scores 1.0 by construction of the data, not by reader skill: on {split} of "
        f"{len(per_image)} images do the readers disagree on normal vs abnormal (every reader of an abnormal image "
        "drew at least one box, and every normal image is \"No finding\" for all its readers). Use the finding rows "
        "and \"all findings\" (micro average over the 14 findings) as the baseline.",
        f"- Readers {', '.join(normal_only)} drew no finding box at all (they read normal images only); a \"–\" "
        "is a ratio with a zero denominator.",
        "- A detector's P/R/F1 at IoU 0.4 against the fused truth (`thoracic evaluate`, `prf` in metrics.json) is "
        "comparable with these rows when it is scored on the same kind of truth; its AP is not.",
        "",
        "All readers, all classes: `human_baseline.csv`; with counts: `human_baseline.json`.",
    ]
    lines += [f"\nNote: {n}" for n in result.notes]
    if table.problems:
        lines.append(f"\n{len(table.problems)} input problem(s) are listed in `human_baseline.json`.")
    (out_dir / "human_baseline.md").write_text("\n".join(lines) + "\n")
    print(f"{seconds:.1f} s; all findings: {result.overall['all findings']}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
