"""Detector throughput on the lent GPU machine (issue 8, item 4), printed as one JSON object.

Measures, on the 512 px validation images of ``bench/gpu/prepare.py``:

- ``ultralytics``: ``YOLO(weights).predict`` on the GPU (torch, fp32 and fp16), batch 1 and 32:
  images/s including ultralytics' own letterbox and NMS (images already decoded in memory);
- ``forward``: the bare network on random 512x512 batches (fp32, fp16): the GPU's ceiling;
- ``onnxruntime``: which execution providers this onnxruntime build has, and the CPU provider's
  images/s for ``detector.onnx`` with 1 thread and with all cores (batch 1, the thoracic default);
  with the CUDA provider present it is timed too.

Usage (there): ``python3 bench/gpu/predict_gpu.py --weights best.pt --images .device/nih/val_0.txt
--onnx src/thoracic/models/detector/detector.onnx``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path


def rate(fn, n_images: int, rounds: int = 3) -> dict:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"images": n_images, "seconds_median": round(med, 4), "images_per_s": round(n_images / med, 1)}


def ultralytics_rates(weights: str, images: list, device: str, big: int = 64) -> dict:
    import torch
    from ultralytics import YOLO

    cuda = device != "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model = YOLO(weights)
    out = {}
    for half in ((False, True) if cuda else (False,)):
        for batch in (1, min(32, big)):
            def run(batch=batch, half=half):
                for i in range(0, len(images), batch):
                    model.predict(images[i:i + batch], imgsz=512, device=device, quantize=16 if half else 32, conf=0.01, verbose=False)
                sync()
            out[f"{'fp16' if half else 'fp32'}_batch{batch}"] = rate(run, len(images))
    net = model.model.to("cuda" if cuda else "cpu").eval()
    for half in ((False, True) if cuda else (False,)):
        for batch in (1, big):
            x = torch.rand(batch, 3, 512, 512, device="cuda" if cuda else "cpu")
            m = net.half() if half else net.float()
            x = x.half() if half else x

            def fwd(m=m, x=x):
                with torch.inference_mode():
                    for _ in range(20):
                        m(x)
                sync()
            out[f"forward_{'fp16' if half else 'fp32'}_batch{batch}"] = rate(fwd, 20 * batch)
    return out


def ort_rates(onnx: str, images: list) -> dict:
    import numpy as np
    import onnxruntime as ort

    res = {"version": ort.__version__, "providers": ort.get_available_providers()}
    x = [np.ascontiguousarray(np.repeat(im[None, None].astype(np.float32) / 255.0, 3, axis=1)) for im in images[:64]]
    cores = len(os.sched_getaffinity(0))
    for label, providers, threads in (("cpu_1_thread", ["CPUExecutionProvider"], 1),
                                      (f"cpu_{cores}_threads", ["CPUExecutionProvider"], cores),
                                      ("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"], 1)):
        if providers[0] not in res["providers"]:
            res[label] = "not available in this onnxruntime build"
            continue
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(onnx, so, providers=providers)
        name = sess.get_inputs()[0].name

        def run(sess=sess, name=name):
            for xi in x:
                sess.run(None, {name: xi})
        res[label] = rate(run, len(x))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--images", required=True, type=Path, help="list file of 512 px images (one path per line)")
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--device", default="0", help="CUDA device (cpu: a dry run of this script)")
    ap.add_argument("--limit", type=int, default=0, help="first N images only (dry runs)")
    args = ap.parse_args()
    import cv2
    import torch

    base = args.images.parent
    paths = [base / line.strip() for line in args.images.read_text().splitlines() if line.strip()]
    paths = paths[:args.limit] if args.limit else paths
    gray = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
    bgr = [cv2.cvtColor(g, cv2.COLOR_GRAY2BGR) for g in gray]
    result = {"gpu": torch.cuda.get_device_name(0) if args.device != "cpu" else "none (dry run)", "torch": torch.__version__, "cores": len(os.sched_getaffinity(0))}
    result["onnxruntime"] = ort_rates(args.onnx, gray)
    result["ultralytics"] = ultralytics_rates(args.weights, bgr, args.device, 64 if args.device != "cpu" else 2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
