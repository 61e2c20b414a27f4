"""Back-ends and precisions side by side on the same ONNX files, in one run (issue 18).

    .venv/bin/python bench/backends.py                    # 5 rounds, 10 calls per variant and round
    .venv/bin/python bench/backends.py --rounds 8 --calls 20 --threads 2

Rows, for each shipped model (detector 512 px, classifier, lungs UNet) on one input of its shape:

- ``onnxruntime f32``: thoracic's ONNX Runtime session (``onnx_session``, ``threads`` intra-op
  threads), the baseline of the ratios;
- ``thoracic openvino f32`` / ``bf16``: thoracic's OpenVINO session (``load_model`` with
  ``onnx_backend("openvino", ...)``: ``INFERENCE_NUM_THREADS``, ``PERFORMANCE_HINT=LATENCY``,
  ``INFERENCE_PRECISION_HINT``); bf16 only where the CPU reports it;
- ``thoracic auto``: what ``--backend auto --precision auto`` picks here;
- ``plain openvino``: ``openvino.compile_model(file, "CPU")`` with no configuration at all (its own
  thread count and default precision, printed), and with ``INFERENCE_PRECISION_HINT=bf16``: the
  reference the issue's target compares with.

Then the lungs model per image (``LungSegmenter.segment`` of a bundled NIH film: preprocessing,
inference, up-sampling, post-processing) on ONNX Runtime and on what ``auto`` picks; and P1 end to
end (``Predictor.predict`` on the uncompressed RG1 DICOM, default models) on each back-end, beside
ultralytics (``YOLO(detector.onnx).predict`` of the same image as an 8-bit PNG, torch 2 threads, in
its own warm process: ``bench/predict.py``'s worker). Variants are interleaved round by round, so
load from other programs hits them alike; the ratios are what to read, the milliseconds move with
the load (printed). Each forward row also prints the largest absolute difference of its outputs
from ONNX Runtime's. Last, the issue's targets that this run measures, each PASS or FAIL
(``--check``: exit 1 on a FAIL).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
SAMPLES = ROOT / "src" / "thoracic" / "samples"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _input(session: Any) -> tuple[str, np.ndarray]:
    inp = session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    return inp.name, np.random.default_rng(0).random(shape, dtype=np.float32)


def has_bf16() -> bool:
    from thoracic.models.runtime import import_openvino

    ov = import_openvino()

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def forward_variants(kind: str, threads: int) -> list[tuple[str, Callable[[], list[np.ndarray]]]]:
    from thoracic.models.runtime import import_openvino

    ov = import_openvino()

    from thoracic.models.registry import model_path
    from thoracic.models.runtime import load_model, onnx_backend, onnx_session

    path = model_path(kind)
    ort = onnx_session(path, threads)
    name, x = _input(ort)
    feeds = {name: x}
    rows: list[tuple[str, Callable[[], list[np.ndarray]]]] = [("onnxruntime f32", lambda: ort.run(None, feeds))]
    precisions = ["f32", "bf16"] if has_bf16() else ["f32"]
    for precision in precisions:
        with onnx_backend("openvino", precision):
            m = load_model(path, kind, threads=threads)
        rows.append((f"thoracic openvino {precision}", lambda s=m.session: s.run(None, feeds)))
    auto = load_model(path, kind, threads=threads)
    rows.append((f"thoracic auto ({auto.backend})", lambda s=auto.session: s.run(None, feeds)))
    core = ov.Core()
    plain = core.compile_model(str(path), "CPU")
    info = (f"{plain.get_property('INFERENCE_NUM_THREADS') or 'default'} threads, "
            f"{plain.get_property('INFERENCE_PRECISION_HINT')}")
    req = plain.create_infer_request()
    rows.append((f"plain openvino ({info})", lambda r=req: list(r.infer(feeds).to_tuple())))
    if "bf16" in precisions:
        plain16 = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
        req16 = plain16.create_infer_request()
        rows.append(("plain openvino bf16 hint", lambda r=req16: list(r.infer(feeds).to_tuple())))
    return rows


def p1_variants(threads: int, work: Path) -> list[tuple[str, Callable[[], Any]]]:
    import pydicom

    from thoracic.inference.predictor import Predictor
    from thoracic.models.runtime import onnx_backend

    ds = pydicom.dcmread(SAMPLES / "RG1_J2KI.dcm")
    ds.decompress()
    dcm = work / "rg1_uncompressed.dcm"
    ds.save_as(dcm)
    combos = [("onnxruntime", "f32"), ("openvino", "f32")] + ([("openvino", "bf16")] if has_bf16() else [])
    rows: list[tuple[str, Callable[[], Any]]] = []
    for backend, precision in combos:
        with onnx_backend(backend, precision):
            pred = Predictor.load(threads=threads)
        rows.append((f"P1 {backend} {precision}", lambda p=pred: p.predict(str(dcm))))
    auto = Predictor.load(threads=threads)
    rows.append((f"P1 auto ({auto.detectors[0].backend})", lambda p=auto: p.predict(str(dcm))))
    return rows


def lungs_variants(threads: int) -> list[tuple[str, Callable[[], Any]]]:
    from thoracic.anatomy import LungSegmenter
    from thoracic.io import read
    from thoracic.models.runtime import onnx_backend

    rg = read(SAMPLES / "00000377_004.jpg")
    rows: list[tuple[str, Callable[[], Any]]] = []
    with onnx_backend("onnxruntime", "f32"):
        ort = LungSegmenter.load(threads=threads)
    rows.append(("lungs per image onnxruntime f32", lambda: ort.segment(rg)))
    auto = LungSegmenter.load(threads=threads)
    rows.append((f"lungs per image auto ({auto.backend})", lambda: auto.segment(rg)))
    return rows


class _Timed:
    """A variant that measures itself (a worker process reports its own per-call seconds)."""

    def __init__(self, run: Callable[[int], list[float]]) -> None:
        self.run = run


def run_interleaved(variants: list[tuple[str, Any]], rounds: int, calls: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    for _, fn in variants:  # warm-up
        if isinstance(fn, _Timed):
            fn.run(2)
        else:
            for _ in range(2):
                fn()
    for _ in range(rounds):
        for name, fn in variants:
            if isinstance(fn, _Timed):
                times[name] += fn.run(calls)
                continue
            for _ in range(calls):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    return times


def ultralytics_worker(work: Path) -> tuple[Any, _Timed]:
    """bench/predict.py's warm ultralytics worker on RG1 as an 8-bit PNG (the P1 baseline)."""
    sys.path.insert(0, str(BENCH_DIR))
    import predict  # bench/predict.py

    singles = predict.build_inputs(work)
    worker = predict.Worker("ultralytics", singles["png"], work)

    def run(n: int) -> list[float]:
        before = len(worker.times)
        worker.run(n)
        return worker.times[before:]

    return worker, _Timed(run)


def _max_diff(ref: list[np.ndarray], out: list[np.ndarray]) -> float:
    return max(float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).max()) for a, b in zip(ref, out))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=10, help="calls per variant and round (P1: half)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-p1", action="store_true")
    ap.add_argument("--no-ultralytics", action="store_true", help="P1 without the ultralytics row (no train extra)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target fails")
    args = ap.parse_args(argv)
    import onnxruntime

    from thoracic._process import keep_freed_memory

    keep_freed_memory()  # the process setting of thoracic's commands (bench/predict.py p1 also shows P1 without)

    from thoracic.models.runtime import import_openvino

    ov = import_openvino()

    core = ov.Core()
    print(f"openvino {ov.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"CPU: {core.get_property('CPU', 'FULL_DEVICE_NAME')}, "
          f"capabilities {' '.join(core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))}; {os.cpu_count()} cores")
    print(f"load average before: {load_average()}")
    print(f"threads {args.threads}; {args.rounds} rounds x {args.calls} calls per variant, interleaved; medians\n")
    print(f"{'model':<11} {'variant':<46} {'ms':>8} {'x ORT':>7} {'x plainOV best':>15} {'max |diff|':>11}")
    targets: list[tuple[str, float, float]] = []  # (what, ratio, limit)
    for kind in ("detector", "classifier", "lungs"):
        variants = forward_variants(kind, args.threads)
        ref = variants[0][1]()
        diffs = {name: _max_diff(ref, fn()) for name, fn in variants}
        times = run_interleaved(variants, args.rounds, args.calls)
        med = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
        base = med[variants[0][0]]
        plain_best = min(v for k, v in med.items() if k.startswith("plain openvino"))
        for name, _ in variants:
            print(f"{kind:<11} {name:<46} {med[name]:8.1f} {med[name] / base:7.2f} {med[name] / plain_best:15.2f} "
                  f"{diffs[name]:11.2e}")
        if kind == "detector":
            auto_name = next(n for n, _ in variants if n.startswith("thoracic auto"))
            targets.append(("bare detector forward, thoracic's choice / plain OpenVINO's fastest", med[auto_name] / plain_best, 1.05))
    variants = lungs_variants(args.threads)
    times = run_interleaved(variants, args.rounds, args.calls)
    med = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    base = med[variants[0][0]]
    for name, _ in variants:
        print(f"{'lungs':<11} {name:<46} {med[name]:8.1f} {med[name] / base:7.2f} {'':>15} {'':>11}")
    targets.append(("lungs model per image, default / ONNX Runtime", med[variants[1][0]] / base, 0.5))
    if not args.no_p1:
        with tempfile.TemporaryDirectory(dir=BENCH_DIR) as tmp:
            variants = p1_variants(args.threads, Path(tmp))
            worker = None
            if not args.no_ultralytics:
                worker, timed = ultralytics_worker(Path(tmp))
                variants.insert(0, ("P1 ultralytics YOLO.predict (PNG, torch 2 threads)", timed))
            try:
                times = run_interleaved(variants, args.rounds, max(1, args.calls // 2))
            finally:
                if worker is not None:
                    worker.close()
        med = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
        base = med[variants[0][0]]
        for name, _ in variants:
            print(f"{'P1':<11} {name:<46} {med[name]:8.1f} {med[name] / base:7.2f} {'':>15} {'':>11}")
        if worker is not None:
            targets.append(("P1 default models, default back-end / ultralytics", med[variants[-1][0]] / base, 0.6))
    print(f"\nload average after: {load_average()}")
    failed = 0
    for what, ratio, limit in targets:
        ok = ratio <= limit
        failed += not ok
        print(f"target {what} <= {limit:.2f}x: {'PASS' if ok else 'FAIL'} ({ratio:.2f}x)")
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
