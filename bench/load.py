"""Load test of ``thoracic serve``: mixed valid and invalid requests at a fixed concurrency.

What it does
------------
Starts ``thoracic serve`` (``python -m thoracic.cli.main serve``) on a free loopback port (or uses ``--url``), then sends
``--requests`` requests (default 500) from ``--concurrency`` client threads (default 16), a
seeded shuffle of:

* valid analyses: a CR DICOM (multipart), a JPEG 2000 CR DICOM (raw body), an NIH PNG (raw body),
  an NIH JPEG (multipart), the CR DICOM with ``outputs=sr,gsps,seg`` (the DICOM results are made
  too) -> 200, or 429 when every analysis slot is taken;
* invalid ones: junk bytes (415), an empty body (400), a truncated DICOM (400), a lateral view
  (422), a PNG asking for an SR (422), an upload beyond the limit (413), no token and a wrong
  token (401); and ``GET /health`` (200).

Clients do not retry; with ``--backoff S`` a client pauses ``min(Retry-After, S)`` seconds after
a 429 before its next request (default: no pause, the hardest case for the service).

With ``--audit`` the server writes its audit log (``--audit-log``); the run then also checks
that it holds exactly one whole JSON line per analysis request sent, with the outcome of its
answer (ok for a 200, refused for a 4xx, error for a 5xx).

It reports the counts by status and by kind, p50/p99 latency (all, 200s, 429s, the rest), the
throughput, whether every 429 carried ``Retry-After``, and the server's resident memory (psutil,
sampled every 50 ms: after start-up, peak, at the end). The service must answer no 5xx, no
request may fail at the transport level, and every status must be one its kind allows.

How to run
----------
From the repository root::

    .venv/bin/python bench/load.py                         # 500 requests, concurrency 16
    .venv/bin/python bench/load.py --workers 1 --queue 4   # the server's pool
    .venv/bin/python bench/load.py --backoff 1             # clients pause up to 1 s after a 429
    .venv/bin/python bench/load.py --check                 # exit 1 when a requirement fails
    .venv/bin/python bench/load.py --check --audit         # + the audit log: one line per analysis

The server runs with ``--max-upload-mb 2``, ``--workers 2 --queue 8`` and ``--threads 1`` unless
told otherwise, so a concurrency of 16 overfills it on purpose: the excess must be answered 429
with ``Retry-After`` at once instead of queueing. Timings depend on other load on the machine.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "thoracic" / "samples"
TOKEN = "load-test-token"


@dataclass(frozen=True)
class Kind:
    name: str
    method: str
    path: str
    expect: frozenset[int]
    body: bytes | None = None
    multipart: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    auth: str | None = TOKEN


def _dicom(path: Path, **changes) -> bytes:
    import pydicom

    ds = pydicom.dcmread(path)
    for k, v in changes.items():
        setattr(ds, k, v)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _png(path: Path) -> bytes:
    from PIL import Image

    with Image.open(path) as im:
        buf = io.BytesIO()
        im.convert("L").save(buf, format="PNG")
    return buf.getvalue()


def kinds(limit_mb: float) -> list[tuple[Kind, int]]:
    """The request kinds and their weights."""
    cr = (SAMPLES / "siim_cr_jpeg_baseline.dcm").read_bytes()
    j2k = (SAMPLES / "RG1_J2KI.dcm").read_bytes()
    jpeg = (SAMPLES / "00000377_004.jpg").read_bytes()
    png = _png(SAMPLES / "00001437_012.jpg")
    ok = frozenset({200, 429})
    dcm = (("Content-Type", "application/dicom"),)
    big = os.urandom(int(limit_mb * (1 << 20)) + 100_000)
    return [
        (Kind("dicom", "POST", "/v1/analyze", ok, cr, multipart=True), 8),
        (Kind("dicom-j2k", "POST", "/v1/analyze", ok, j2k, headers=dcm), 4),
        (Kind("png", "POST", "/v1/analyze", ok, png, headers=(("Content-Type", "image/png"),)), 6),
        (Kind("jpeg", "POST", "/v1/analyze", ok, jpeg, multipart=True), 6),
        (Kind("dicom+sr/gsps/seg", "POST", "/v1/analyze?outputs=sr,gsps,seg", ok, cr, multipart=True), 4),
        (Kind("junk", "POST", "/v1/analyze", frozenset({415, 429}), os.urandom(4096), headers=dcm), 5),
        (Kind("empty", "POST", "/v1/analyze", frozenset({400, 429}), b"", headers=dcm), 4),
        (Kind("truncated", "POST", "/v1/analyze", frozenset({400, 429}), cr[: len(cr) // 2], headers=dcm), 4),
        (Kind("lateral", "POST", "/v1/analyze", frozenset({422, 429}),
              _dicom(SAMPLES / "siim_cr_jpeg_baseline.dcm", ViewPosition="LL"), headers=dcm), 4),
        (Kind("png-asks-sr", "POST", "/v1/analyze?outputs=sr", frozenset({422, 429}), png, multipart=True), 4),
        (Kind("too-large", "POST", "/v1/analyze", frozenset({413, 429}), big, headers=dcm), 4),
        (Kind("no-token", "POST", "/v1/analyze", frozenset({401}), cr, headers=dcm, auth=None), 4),
        (Kind("wrong-token", "POST", "/v1/analyze", frozenset({401}), cr, headers=dcm, auth="not-the-token"), 4),
        (Kind("health", "GET", "/health", frozenset({200}), auth=None), 4),
    ]


@dataclass
class Outcome:
    kind: str
    status: int  # 0: transport error
    seconds: float
    retry_after: str | None
    error: str = ""
    analysis: bool = False  # a POST /v1/analyze: one audit line


def _send(client: httpx.Client, kind: Kind) -> Outcome:
    headers = dict(kind.headers)
    if kind.auth is not None:
        headers["Authorization"] = f"Bearer {kind.auth}"
    t0 = time.perf_counter()
    try:
        if kind.method == "GET":
            r = client.get(kind.path, headers=headers)
        elif kind.multipart:
            r = client.post(kind.path, files={"file": ("upload", kind.body)}, headers=headers)
        else:
            r = client.post(kind.path, content=kind.body, headers=headers)
        return Outcome(kind.name, r.status_code, time.perf_counter() - t0, r.headers.get("retry-after"),
                       analysis=kind.path.startswith("/v1/analyze"))
    except httpx.HTTPError as err:
        return Outcome(kind.name, 0, time.perf_counter() - t0, None, type(err).__name__)


class MemorySampler(threading.Thread):
    def __init__(self, pid: int | None, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid) if pid else None
        self.every = every
        self.samples: list[int] = []
        self._halt = threading.Event()

    def rss(self) -> int:
        if self.proc is None:
            return 0
        try:
            return self.proc.memory_info().rss + sum(c.memory_info().rss for c in self.proc.children(recursive=True))
        except psutil.Error:
            return 0

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append(self.rss())
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def start_server(args: argparse.Namespace, tmp: Path) -> tuple[subprocess.Popen, str]:
    token_file = tmp / "token"
    token_file.write_text(TOKEN)
    cmd = [sys.executable, "-m", "thoracic.cli.main", "serve", "--host", "127.0.0.1", "--port", "0",
           "--token-file", str(token_file), "--max-upload-mb", str(args.max_upload_mb),
           "--workers", str(args.workers), "--queue", str(args.queue), "--threads", str(args.threads),
           "--log-level", "warning"]
    if args.audit:
        cmd += ["--audit-log", str(tmp / "audit.jsonl")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("THORACIC_TOKEN", None)
    with (tmp / "server.log").open("w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    first = proc.stdout.readline()
    if not first.startswith("thoracic serve: http://"):
        proc.kill()
        raise SystemExit(f"the server did not start: {first!r}\n{(tmp / 'server.log').read_text()[-2000:]}")
    url = first.split()[2].rstrip("/")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not answer /health within 120 s")


def _pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1000:8.1f}" if values else "       -"


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    table = kinds(args.max_upload_mb)
    plan = rng.choices([k for k, _ in table], weights=[w for _, w in table], k=args.requests)

    work = ROOT / "bench" / "_work"
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="load-", dir=work))
    proc = None
    try:
        url = args.url
        if url is None:
            proc, url = start_server(args, tmp)
        return _drive(args, table, plan, url, proc, tmp / "audit.jsonl" if args.audit else None)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def _audit_problems(path: Path, outcomes: list[Outcome]) -> tuple[str, list[str]]:
    """The audit log against the analysis requests sent: a summary line and what is wrong."""
    import json

    analyses = [o for o in outcomes if o.analysis and o.status]
    lines = path.read_text(encoding="ascii").splitlines()
    records = [json.loads(line) for line in lines]  # a torn or non-JSON line fails here
    want = Counter("ok" if o.status < 400 else "refused" if o.status < 500 else "error" for o in analyses)
    got = Counter(r["outcome"] for r in records)
    statuses = Counter(r["status"] for r in records) == Counter(o.status for o in analyses)
    problems = []
    if len(records) != len(analyses):
        problems.append(f"{len(records)} audit lines for {len(analyses)} analysis requests")
    if got != want or not statuses:
        problems.append(f"audit outcomes {dict(got)} differ from the answers {dict(want)}")
    summary = (f"audit log: {len(records)} lines for {len(analyses)} analysis requests; outcomes "
               + ", ".join(f"{k} {n}" for k, n in sorted(got.items()))
               + f"; token ids {sorted({str(r['token']) for r in records})}; {path.stat().st_size / 1024:.0f} KiB")
    return summary, problems


def _drive(args: argparse.Namespace, table: list[tuple[Kind, int]], plan: list[Kind], url: str,
           proc: subprocess.Popen | None, audit: Path | None = None) -> int:
    sampler = MemorySampler(proc.pid if proc else args.pid)
    baseline = sampler.rss()
    # warm up: one analysis so that the first timings do not include lazy initialisation
    with httpx.Client(base_url=url, timeout=120) as c:
        warm_up = _send(c, table[0][0])
    warm = sampler.rss()
    sampler.start()

    outcomes: list[Outcome] = []
    quarters: list[int] = []  # server RSS after each quarter of the requests
    lock = threading.Lock()
    it = iter(plan)

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            while True:
                with lock:
                    kind = next(it, None)
                if kind is None:
                    return
                out = _send(client, kind)
                with lock:
                    outcomes.append(out)
                    done = len(outcomes)
                    if done * 4 // args.requests > len(quarters):  # a quarter of the run is done
                        quarters.append(sampler.rss())
                if out.status == 429 and args.backoff > 0:  # a polite client waits (capped) before its next request
                    time.sleep(min(float(out.retry_after or 1), args.backoff))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    sampler.stop()
    end_rss = sampler.rss()
    with httpx.Client(base_url=url, timeout=30) as c:
        health = c.get("/health").json()

    # --- report ---
    by_status = Counter(o.status for o in outcomes)
    by_kind: dict[str, Counter] = defaultdict(Counter)
    lat_kind: dict[str, list[float]] = defaultdict(list)
    for o in outcomes:
        by_kind[o.kind][o.status] += 1
        lat_kind[o.kind].append(o.seconds)
    expect = {k.name: k.expect for k, _ in table}
    unexpected = [o for o in outcomes if o.status not in expect[o.kind]]
    five = sum(n for s, n in by_status.items() if s >= 500)
    transport = by_status.get(0, 0)
    busy = [o for o in outcomes if o.status == 429]
    retry_ok = all(o.retry_after is not None and o.retry_after.isdigit() and int(o.retry_after) >= 1 for o in busy)
    lat = [o.seconds for o in outcomes]
    mb = 1 << 20
    peak = max(sampler.samples, default=0)

    print(f"thoracic serve load test: {len(outcomes)} requests, concurrency {args.concurrency}, "
          f"server --workers {args.workers} --queue {args.queue} --threads {args.threads} "
          f"--max-upload-mb {args.max_upload_mb}; client backoff after 429: {args.backoff} s")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average before/after: {args._load0} / {tuple(round(x, 2) for x in os.getloadavg())}")
    print(f"wall {wall:.1f} s, {len(outcomes) / wall:.1f} requests/s")
    print("status counts: " + ", ".join(f"{s if s else 'transport-error'}: {n}" for s, n in sorted(by_status.items())))
    print(f"{'kind':<20} {'n':>4}  {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for k, _ in table:
        c = by_kind.get(k.name)
        if not c:
            continue
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(c.items()))
        print(f"{k.name:<20} {sum(c.values()):>4}  {_pct(lat_kind[k.name], 50)} {_pct(lat_kind[k.name], 99)}  {statuses}")
    groups = {
        "all": lat,
        "200 (analyses, health)": [o.seconds for o in outcomes if o.status == 200],
        "429 (busy)": [o.seconds for o in busy],
        "other 4xx": [o.seconds for o in outcomes if 400 <= o.status < 500 and o.status != 429],
    }
    for name, values in groups.items():
        print(f"latency {name:<24} n={len(values):<4} p50 {_pct(values, 50).strip()} ms, p99 {_pct(values, 99).strip()} ms")
    print(f"429 with a valid Retry-After: {sum(1 for o in busy if o.retry_after)}/{len(busy)}"
          + (f" (values seen: {sorted(Counter(o.retry_after for o in busy).items())})" if busy else ""))
    if proc is not None or args.pid:
        print(f"server RSS: {baseline / mb:.0f} MiB after start-up, {warm / mb:.0f} MiB after warm-up, "
              f"peak {peak / mb:.0f} MiB, {end_rss / mb:.0f} MiB at the end ({len(sampler.samples)} samples); "
              f"after each quarter of the requests: {' / '.join(f'{q / mb:.0f}' for q in quarters)} MiB")
    print(f"after the run: /health in_flight={health['in_flight']} results kept={health['results']}")

    failures = []
    if audit is not None:
        summary, problems = _audit_problems(audit, [warm_up, *outcomes])
        print(summary)
        failures += problems
    if five:
        failures.append(f"{five} responses were 5xx")
    if transport:
        failures.append(f"{transport} requests failed at the transport level "
                        f"({Counter(o.error for o in outcomes if o.status == 0)})")
    if unexpected:
        failures.append(f"{len(unexpected)} unexpected statuses: "
                        f"{Counter((o.kind, o.status) for o in unexpected).most_common(5)}")
    if not retry_ok:
        failures.append("a 429 came without a valid Retry-After")
    if health["in_flight"] != 0:
        failures.append("requests were still in flight after the run")
    if peak and peak > args.max_rss_mb * mb:
        failures.append(f"peak RSS {peak / mb:.0f} MiB exceeds {args.max_rss_mb} MiB")
    for f in failures:
        print(f"FAIL: {f}")
    if not failures:
        print("PASS: 0 responses 5xx, no transport errors, every status as expected, 429s carry Retry-After, "
              f"peak RSS within {args.max_rss_mb} MiB")
    return 1 if failures and args.check else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--url", default=None, help="an already running server (its token must be the load token)")
    p.add_argument("--pid", type=int, default=None, help="with --url: the server's pid, for its memory")
    p.add_argument("--workers", type=int, default=2, help="the server's --workers (analyses at once)")
    p.add_argument("--queue", type=int, default=8, help="the server's --queue")
    p.add_argument("--threads", type=int, default=1, help="the server's ONNX Runtime threads")
    p.add_argument("--max-upload-mb", type=float, default=2.0)
    p.add_argument("--max-rss-mb", type=int, default=2048, help="--check fails above this peak RSS")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backoff", type=float, default=0.0,
                   help="after a 429 a client waits min(Retry-After, this) seconds (default 0: no pause)")
    p.add_argument("--audit", action="store_true",
                   help="the server writes an audit log; check one line per analysis request (not with --url)")
    p.add_argument("--check", action="store_true", help="exit 1 when a requirement fails")
    args = p.parse_args(argv)
    if args.audit and args.url:
        p.error("--audit needs the server this script starts (no --url)")
    args._load0 = tuple(round(x, 2) for x in os.getloadavg())
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
