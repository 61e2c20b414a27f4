"""What the audit log of ``thoracic serve`` (``--audit-log``) adds to one analysis (issue 19, item 5).

Each audit line names its image by :func:`thoracic.serve.audit.subject`: the SHA-256 of the
SOP Instance UID, which takes a second parse of a DICOM upload's header, or the SHA-256 of the
upload's bytes. This times that call against ``Analyzer.analyze`` (the service's work, with
lungs and heatmap) of the same bytes, interleaved in one process, medians of ``--rounds``; and
one line's write (:class:`thoracic.serve.audit.AuditLog`, one ``write(2)``).

How to run
----------
From the repository root::

    .venv/bin/python bench/audit_cost.py
    .venv/bin/python bench/audit_cost.py --rounds 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "thoracic" / "samples"
FILES = {
    "CR DICOM, JPEG baseline, 127 kB": SAMPLES / "siim_cr_jpeg_baseline.dcm",
    "CR DICOM, JPEG 2000, 677 kB": SAMPLES / "RG1_J2KI.dcm",
    "NIH JPEG, 112 kB": SAMPLES / "00000377_004.jpg",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from thoracic.inference.analyzer import Analyzer
    from thoracic.serve.audit import AuditLog, subject

    analyzer = Analyzer.load((), None, threads=1)
    print(f"{os.cpu_count()} cores, load average before {tuple(round(x, 2) for x in os.getloadavg())}")
    for name, path in FILES.items():
        data = path.read_bytes()
        analyzer.analyze(data)  # warm
        sub, ana = [], []
        for _ in range(args.rounds):
            t = time.perf_counter()
            subject(data)
            sub.append(time.perf_counter() - t)
            t = time.perf_counter()
            analyzer.analyze(data)
            ana.append(time.perf_counter() - t)
        s, a = statistics.median(sub), statistics.median(ana)
        print(f"{name}: subject {s * 1000:.2f} ms, analysis {a * 1000:.0f} ms: {100 * s / a:.2f} % of it")
    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog(str(Path(tmp) / "audit.jsonl"))
        record = {"time": "2026-01-01T00:00:00.000Z", "token": "0" * 12, "subject": "sop_instance_uid",
                  "sha256": "0" * 64, "models": ["detector:0", "classifier:0", "lungs:0"], "outcome": "ok",
                  "type": None, "status": 200, "seconds": 0.3, "id": "x" * 22}
        t = time.perf_counter()
        for _ in range(1000):
            log.write(record)
        per_line = (time.perf_counter() - t) / 1000
        log.close()
    print(f"one audit line written: {per_line * 1e6:.0f} us")
    print(f"load average after {tuple(round(x, 2) for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
