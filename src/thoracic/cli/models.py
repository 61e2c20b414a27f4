"""``thoracic models``: the shipped models, their identity and the back-end each loads on here."""

from __future__ import annotations

import argparse

from thoracic.cli._args import add_backend_arguments

__all__ = ["add_parser"]

HELP = ("list the shipped models: file, sha256, the back-end and precision each runs on here, and the reduced "
        "precisions whose accuracy check passed")


def _cmd_models(args: argparse.Namespace) -> int:
    from thoracic.models.registry import model_path
    from thoracic.models.runtime import accepted_precisions, load_model, onnx_backend, onnx_device, openvino_available

    head = ("role", "file", "sha256", "backend", "accepted")
    rows = []
    with onnx_device(args.device), onnx_backend(args.backend, args.precision):
        for kind in ("detector", "classifier", "lungs"):
            path = model_path(kind)
            if not path.is_file():
                rows.append((kind, path.name, "-", "not installed", "-"))
                continue
            m = load_model(path, kind, threads=1)
            rows.append((kind, path.name, m.sha256[:12], m.backend, ",".join(accepted_precisions(m.sha256)) or "-"))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    print("(accepted: the reduced precisions whose accuracy check passed for that file, in models/precision.json; "
          "--precision auto uses bf16 only there, on --backend openvino)")
    if not openvino_available():
        print("(OpenVINO is not installed: pip install 'thoracic[fast]' for the faster CPU back-end)")
    from thoracic.inference.preset import BUILTIN_PRESETS

    print("presets (--preset NAME of predict, serve and dicom-node; or a preset file such as train cv's ensemble.json):")
    for name, preset in BUILTIN_PRESETS.items():
        print(f"  {name}: {preset.description}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``models`` to the ``thoracic`` subcommands."""
    p = subparsers.add_parser("models", help=HELP)
    p.add_argument("--device", default="auto", help="ONNX Runtime device: auto, cpu, cuda or cuda:N")
    add_backend_arguments(p)
    p.set_defaults(func=_cmd_models)
    return p
