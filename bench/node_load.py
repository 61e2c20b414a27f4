"""Concurrency of ``thoracic dicom-node``: many modalities sending at once (issue 19, item 4).

What it does
------------
Starts Orthanc (the PACS) and the node (``python -m thoracic.node``, C-STORE results to Orthanc)
as real processes on loopback, makes ``--clients x --per-client`` DICOM instances from the
bundled real radiographs (each a copy with new Study/Series/SOP Instance UIDs; client ``c`` sends
copies of source ``c mod 5``: a JPEG baseline CR, an implicit-VR DX, the JPEG 2000 and JPEG-LS
CR of 1841x1955 and a MONOCHROME1 CR), then starts one dcmtk ``storescu`` process per client,
all at the same moment, each sending its instances in one association. It waits until the
node has finished every job and checks:

* every instance answered: each storescu got a ``Success`` C-STORE response for each of its
  instances and every job in the node's queue is ``done``;
* Orthanc holds exactly one SR, one GSPS and one SEG in each instance's study and nothing else
  (0 lost, 0 duplicated);
* the node's memory: resident set after the models loaded (idle), the kernel's high-water mark
  (``VmHWM`` of ``/proc/<pid>/status``, read before the node stops) and the resident set when
  each quarter of the jobs was done (psutil, sampled every 0.2 s).

It reports the throughput (instances per second from the first C-STORE to the last job done),
the time the modalities took to hand everything over, and each job's time from reception to
its results stored in Orthanc (p50 / p95 / max, from the queue's timestamps).

How to run
----------
From the repository root (Orthanc with its DICOMweb plugin and dcmtk installed, the ``dicom``
extra, the test extra for pytest)::

    .venv/bin/python bench/node_load.py                          # 8 modalities x 50 instances
    .venv/bin/python bench/node_load.py --clients 8 --per-client 5 --check
    .venv/bin/python bench/node_load.py --work /tmp/node_load --keep   # keep logs and databases

The node runs with ``--workers 2 --threads 1`` (the 2-core machine) and ``--queue-size`` equal
to the number of instances, so nothing is refused for a full queue (with the default 100, the
excess would be answered 0xA700 and a modality would have to send it again). ``--check`` exits
1 when an instance was not answered, a result is missing or duplicated, or the node's peak
exceeds ``--max-rss-mb``. Timings depend on the other load of the machine (load averages
printed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "node")]  # the node tests' helpers

from helpers import FIXTURES, SAMPLES
from node_helpers import (
    MODALITY_AE,
    NodeProcess,
    Orthanc,
    free_port,
    make_copy,
    queue_counts,
    result_problems,
    send_concurrently,
    wait_until,
)

#: The bundled real radiographs the instances are copied from.
SOURCES = (
    SAMPLES / "siim_cr_jpeg_baseline.dcm",
    FIXTURES / "nih_dx_implicit_le.dcm",
    SAMPLES / "RG1_J2KI.dcm",
    FIXTURES / "RG1_JLSN.dcm",
    FIXTURES / "siim_cr_fake_monochrome1.dcm",
)
MIB = 1 << 20


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class Sampler(threading.Thread):
    """The node's RSS every 0.2 s and its finished jobs every 0.5 s, until stopped."""

    def __init__(self, pid: int, spool: Path) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.spool = spool
        self.samples: list[tuple[float, int, int]] = []  # (time, rss bytes, finished jobs)
        self.halt = threading.Event()

    def run(self) -> None:
        finished = 0
        last_count = 0.0
        while not self.halt.is_set():
            now = time.monotonic()
            if now - last_count >= 0.5:
                counts = queue_counts(self.spool)
                finished = counts.get("done", 0) + counts.get("failed", 0)
                last_count = now
            try:
                self.samples.append((now, self.proc.memory_info().rss, finished))
            except psutil.Error:
                return
            self.halt.wait(0.2)

    def at_quarters(self, total: int) -> list[int]:
        """The last RSS sample before each quarter of ``total`` jobs was finished (and at the end)."""
        out = []
        for q in (1, 2, 3, 4):
            before = [rss for _, rss, done in self.samples if done < q * total / 4]
            out.append(before[-1] if before else 0)
        return out


def _jobs(spool: Path) -> list[tuple[str, float, float]]:
    db = sqlite3.connect(f"file:{spool / 'queue.sqlite3'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT state, received_at, updated_at FROM jobs ORDER BY id").fetchall()
    finally:
        db.close()


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else float("nan")


def run(args: argparse.Namespace) -> dict:
    exe = shutil.which("storescu")
    if exe is None:
        raise SystemExit("dcmtk's storescu is not installed (Debian package dcmtk)")
    total = args.clients * args.per_client
    if args.work is None:
        (ROOT / "bench" / "_work").mkdir(exist_ok=True)
        args.work = tempfile.mkdtemp(prefix="node-load-", dir=ROOT / "bench" / "_work")
    work = Path(args.work)
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"{work} is not empty; give an empty or new --work folder")
    work.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    batches = [[make_copy(SOURCES[c % len(SOURCES)], work / "send" / f"c{c}" / f"{i}.dcm") for i in range(args.per_client)]
               for c in range(args.clients)]
    print(f"made {total} instances in {time.monotonic() - t:.1f} s", flush=True)
    studies = []
    import pydicom

    for batch in batches:
        studies += [str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID) for f in batch]
    node_port = free_port()
    pacs = Orthanc(work, "pacs", node_port)
    node_args = ["--dest-ae", pacs.aet, "--dest-host", "127.0.0.1", "--dest-port", str(pacs.dicom_port),
                 "--workers", str(args.workers), "--threads", str(args.threads),
                 "--queue-size", str(args.queue_size or total), "--allow-ae", MODALITY_AE, *args.node_arg]
    node = NodeProcess(work / "spool", work / "node.log", node_args, port=node_port)
    report: dict = {"clients": args.clients, "per_client": args.per_client, "instances": total,
                    "node_args": node_args[6:], "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
                    "load_before": [round(x, 2) for x in os.getloadavg()]}
    try:
        node.start(timeout=180)
        assert node.proc is not None
        pid = node.proc.pid
        time.sleep(1.0)
        idle = psutil.Process(pid).memory_info().rss
        sampler = Sampler(pid, node.spool)
        sampler.start()
        t0 = time.monotonic()
        runs = send_concurrently(exe, node.port, batches, timeout=args.timeout)
        t_sent = max(r.ended for r in runs)
        wait_until(lambda: sum(queue_counts(node.spool).get(s, 0) for s in ("done", "failed")) >= total,
                   args.timeout, f"{total} jobs finished (log: {node.log_path})", interval=0.2)
        t_done = time.monotonic()
        peak = _status_kib(pid, "VmHWM") * 1024
        sampler.halt.set()
        sampler.join()
    finally:
        rc = node.stop() if node.proc is not None else None
        by_study = pacs.results_by_study()
        pacs.close()
    jobs = _jobs(node.spool)
    answered = sum(r.responses.count("Success") for r in runs)
    not_success = [s for r in runs for s in r.responses if s != "Success"]
    problems = result_problems(by_study, studies)
    states: dict[str, int] = {}
    for state, _, _ in jobs:
        states[state] = states.get(state, 0) + 1
    latency = [u - r for s, r, u in jobs if s == "done"]
    report.update({
        "storescu_exit_codes": sorted({r.returncode for r in runs}),
        "answered_success": answered,
        "answered_other": not_success[:10],
        "responses": sum(len(r.responses) for r in runs),
        "jobs": states,
        "results_in_pacs": sum(sum(c.values()) for c in by_study.values()),
        "studies_with_one_sr_gsps_seg": len(studies) - sum(1 for p in problems if p.startswith("study")),
        "result_problems": problems[:10],
        "send_seconds": round(t_sent - t0, 1),
        "per_client_send_seconds": [round(r.ended - r.started, 1) for r in runs],
        "total_seconds": round(t_done - t0, 1),
        "throughput_instances_per_s": round(total / (t_done - t0), 3),
        "accept_instances_per_s": round(total / (t_sent - t0), 3),
        "job_seconds_p50_p95_max": [round(_pct(latency, q), 1) for q in (0.5, 0.95, 1.0)],
        "node_rss_idle_mib": round(idle / MIB),
        "node_rss_peak_mib": round(peak / MIB),
        "node_rss_at_quarters_mib": [round(x / MIB) for x in sampler.at_quarters(total)],
        "node_exit": rc,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "work": str(work),
    })
    ok = (answered == total and not not_success and states == {"done": total} and not problems
          and peak <= args.max_rss_mb * MIB and report["storescu_exit_codes"] == [0])
    report["ok"] = ok
    if not args.keep and ok:
        shutil.rmtree(work, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=8, help="storescu processes started at once (default 8)")
    p.add_argument("--per-client", type=int, default=50, help="instances each sends (default 50)")
    p.add_argument("--workers", type=int, default=2, help="the node's --workers (default 2)")
    p.add_argument("--threads", type=int, default=1, help="the node's --threads (default 1)")
    p.add_argument("--queue-size", type=int, default=0, help="the node's --queue-size (default: every instance)")
    p.add_argument("--node-arg", action="append", default=[], metavar="ARG",
                   help="another argument for the node (repeat; e.g. --node-arg=--min-score --node-arg=0.5)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the sending and the jobs")
    p.add_argument("--max-rss-mb", type=float, default=1536.0, help="--check fails above this node peak (default 1536)")
    p.add_argument("--work", default=None, help="an empty folder for the instances, spool, Orthanc and logs")
    p.add_argument("--keep", action="store_true", help="keep the work folder (it is kept anyway when a check fails)")
    p.add_argument("--check", action="store_true", help="exit 1 when a requirement fails")
    args = p.parse_args(argv)
    report = run(args)
    print(json.dumps(report, indent=1))
    r = report
    print(f"\n{r['clients']} storescu x {r['per_client']} = {r['instances']} instances; node {' '.join(r['node_args'])}")
    print(f"answered Success: {r['answered_success']}/{r['instances']}; jobs {r['jobs']}; "
          f"studies with exactly one SR, GSPS, SEG: {r['studies_with_one_sr_gsps_seg']}/{r['instances']}; "
          f"results in Orthanc: {r['results_in_pacs']} (expected {3 * r['instances']})")
    print(f"throughput {r['throughput_instances_per_s']} instances/s ({r['total_seconds']} s first C-STORE to last job "
          f"done); handed over in {r['send_seconds']} s; per job p50/p95/max {r['job_seconds_p50_p95_max']} s")
    print(f"node RSS: idle {r['node_rss_idle_mib']} MiB, at each quarter {r['node_rss_at_quarters_mib']} MiB, "
          f"peak (VmHWM) {r['node_rss_peak_mib']} MiB; load {r['load_before']} -> {r['load_after']}")
    print("OK" if r["ok"] else f"FAILED (work kept in {r['work']})")
    return 0 if r["ok"] or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())
