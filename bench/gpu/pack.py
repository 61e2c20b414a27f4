"""On the GPU machine: put what was trained into at most 7 files under ``$OUT`` that can come back.

The tool returns at most 8 files of at most 16 MiB each, 64 MiB together (log.txt is the 8th).
``results.tar.gz`` always comes back: every run's results.csv, args.yaml, thoracic_train.json,
thoracic_summary.json (a run stopped by its hard time limit gets one marked ``"cut": true``, so
that ``thoracic train cv`` here takes its best.pt as trained), the process logs, the classifier's
per-fold and merged out-of-fold predictions and ``ranking.json``. The weights then fill
``weights_<n>.tar`` files in priority order: the 4 fold models of the detector variants ranked by
their mean cross-validation mAP50 (ultralytics' validation on each held-out CV fold; fold 0 is
never seen here), the classifier trained on folds 1-4 after the first two variants, the rest if it
fits. What does not fit is named in ``results.tar.gz:left_out.txt``.

Usage: ``python bench/gpu/pack.py WORK OUT``
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
import time
from pathlib import Path

MIB = 2 ** 20
FILE_LIMIT = 15.5 * MIB
TOTAL_LIMIT = 60 * MIB
MAX_FILES = 6  # + results.tar.gz + log.txt


def cv_map(run: Path) -> float | None:
    import pandas as pd

    f = run / "results.csv"
    if not f.is_file():
        return None
    df = pd.read_csv(f)
    df.columns = [c.strip() for c in df.columns]
    col = "metrics/mAP50(B)"
    return float(df[col].max()) if col in df and len(df) else None


def stripped(best: Path, dest: Path) -> Path:
    """best.pt without the optimizer, float16 (what ultralytics writes when a run ends)."""
    shutil.copyfile(best, dest)
    try:
        from ultralytics.utils.torch_utils import strip_optimizer

        strip_optimizer(str(dest))
    except Exception as err:  # noqa: BLE001 - an unstripped copy still comes back when it fits
        print(f"pack: could not strip {best}: {err}")
    return dest


def merge_classifier(work: Path) -> dict:
    import numpy as np
    import pandas as pd

    from thoracic.train.classifier import oof_metrics

    parts = sorted((work / "cls").glob("fold_*/oof.csv"))
    if not parts:
        return {"folds": []}
    df = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True)
    df.to_csv(work / "cls" / "oof.csv", index=False)
    labels = tuple(c[2:] for c in df.columns if c.startswith("p:"))
    y = df[list(labels)].to_numpy(np.float32)
    p = df[[f"p:{lab}" for lab in labels]].to_numpy(np.float32)
    metrics = oof_metrics(y, p, df["group"].astype(str).tolist(), labels)
    out = {"folds": sorted(int(f) for f in df["fold"].unique()), "images": len(df), "oof": metrics}
    (work / "cls" / "oof_summary.json").write_text(json.dumps(out, indent=2) + "\n")
    a = metrics.get("abnormal", {})
    print(f"classifier out of fold: {len(df)} images, folds {out['folds']}, abnormal AUC {a.get('auc')} "
          f"(95% CI {a.get('ci95')})")
    return out


def main() -> int:
    work, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    t0 = time.time()
    runs = work / "runs"
    stage = work / "stage"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    ranking: dict[str, dict] = {}
    for vdir in sorted(p for p in runs.glob("*") if p.is_dir()):
        folds = {}
        for run in sorted(vdir.glob("fold_*")):
            best = run / "weights" / "best.pt"
            folds[run.name] = {"map50": cv_map(run), "best": best.is_file(),
                               "finished": (run / "thoracic_summary.json").is_file()}
        vals = [f["map50"] for f in folds.values() if f["map50"] is not None]
        ranking[vdir.name] = {"folds": folds, "mean_map50": sum(vals) / len(vals) if vals else None}
    order = sorted(ranking, key=lambda v: -(ranking[v]["mean_map50"] or -1.0))
    try:
        cls = merge_classifier(work)
    except Exception as err:  # noqa: BLE001 - the detector results still come back
        print(f"pack: classifier merge failed: {err}")
        cls = {"error": str(err)}
    (work / "ranking.json").write_text(json.dumps({"order": order, "variants": ranking, "classifier": cls}, indent=2) + "\n")

    # results.tar.gz: everything small
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for vdir in sorted(p for p in runs.glob("*") if p.is_dir()):
            for run in sorted(vdir.glob("fold_*")):
                for name in ("results.csv", "args.yaml", "thoracic_train.json", "thoracic_summary.json"):
                    if (run / name).is_file():
                        tar.add(run / name, f"runs/{vdir.name}/{run.name}/{name}")
                if not (run / "thoracic_summary.json").is_file() and (run / "weights" / "best.pt").is_file():
                    marker = json.dumps({"best": str(run / "weights" / "best.pt"), "cut": True,
                                         "note": "stopped by bench/gpu/run.sh's hard time limit; best.pt is the best "
                                                 "validated epoch before that"}).encode()
                    info = tarfile.TarInfo(f"runs/{vdir.name}/{run.name}/thoracic_summary.json")
                    info.size = len(marker)
                    tar.addfile(info, io.BytesIO(marker))
        for p in sorted((work / "logs").glob("*.log")):
            tar.add(p, f"logs/{p.name}")
        for p in sorted((work / "cls").glob("**/*")):
            if p.is_file() and p.suffix in (".csv", ".json"):
                tar.add(p, f"cls/{p.relative_to(work / 'cls')}")
        tar.add(work / "ranking.json", "ranking.json")
        plan = work / "plan.json"
        if plan.is_file():
            tar.add(plan, "plan.json")
        left: list[str] = []
        items: list[tuple[str, Path]] = []
        for n, v in enumerate(order):
            for run in sorted((runs / v).glob("fold_*")):
                best = run / "weights" / "best.pt"
                if best.is_file():
                    items.append((f"runs/{v}/{run.name}/weights/best.pt", stripped(best, stage / f"{v}_{run.name}.pt")))
            if n == 1 or (n == len(order) - 1 and n < 1):
                onnx = work / "cls" / "final_f1234" / "classifier.onnx"
                if onnx.is_file():
                    items.append(("cls/final_f1234/classifier.onnx", onnx))
        if not order:
            onnx = work / "cls" / "final_f1234" / "classifier.onnx"
            if onnx.is_file():
                items.append(("cls/final_f1234/classifier.onnx", onnx))
        bins: list[list[tuple[str, Path]]] = []
        sizes: list[int] = []
        total = 0
        for arc, path in items:
            size = path.stat().st_size + 1024
            if size > FILE_LIMIT or total + size > TOTAL_LIMIT:
                left.append(f"{arc} ({size / MIB:.1f} MiB: over the limits)")
                continue
            for i in range(len(bins)):
                if sizes[i] + size <= FILE_LIMIT:
                    bins[i].append((arc, path))
                    sizes[i] += size
                    break
            else:
                if len(bins) >= MAX_FILES:
                    left.append(f"{arc} (no file left)")
                    continue
                bins.append([(arc, path)])
                sizes.append(size)
            total += size
        note = "".join(x + "\n" for x in left).encode()
        info = tarfile.TarInfo("left_out.txt")
        info.size = len(note)
        tar.addfile(info, io.BytesIO(note))
    (out / "results.tar.gz").write_bytes(buf.getvalue())
    for i, b in enumerate(bins, 1):
        with tarfile.open(out / f"weights_{i}.tar", "w") as tar:
            for arc, path in b:
                tar.add(path, arc)
    print(f"pack: results.tar.gz {len(buf.getvalue()) / MIB:.2f} MiB, {len(bins)} weights file(s) "
          f"{[round(s / MIB, 1) for s in sizes]} MiB, {len(left)} left out, {time.time() - t0:.1f} s")
    for x in left:
        print(f"  left out: {x}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
