#!/usr/bin/env python3
"""Long fuzz run of the reader and the predict path (issue 9).

Generates seeded malformed inputs (``tests/fuzz/fuzz_cases.py``: truncated, bit-flipped and
header-mutated DICOMs from the fixtures, corrupt PNG/JPEG, huge declared sizes, wrong modalities,
multi-frame, odd photometric values, ...) and runs each in a worker process with a per-input
budget of ``--timeout`` CPU seconds (hang detection that a busy machine does not fool; also
``--wall-factor`` times that in wall time) and an address-space cap (``RLIMIT_AS``, ``--mem-mb``
over the worker's size after start-up: memory blow-ups), then prints
the count of every outcome: ``ok``, each typed error class, ``untyped:<class>``, ``hang``,
``memory``, ``crash`` (the worker died: a native crash) and ``bad-output`` (read "ok" but
pixels not float32 in [0, 1]). The bytes and recipe of every case that is not ``ok`` nor a typed
error are saved under ``--out`` to reproduce::

    scripts/fuzz.py --count 10000 --seed 1 --timeout 5 --out /tmp/fuzz-read
    scripts/fuzz.py --count 5000 --seed 4 --mode predict --families shape:12,tag:10,bitflip:6 --out /tmp/fuzz-predict
    scripts/fuzz.py --replay 1-000123     # rebuild one case (same --families/--large-weight) and read it here

The summary (counts per stage and outcome, per family, slowest cases, largest worker RSS, library
warnings seen) is printed and written to ``--out``/summary.json.

``--mode read`` calls ``thoracic.io.read``; ``--mode predict`` reads, then runs
``Predictor.load(threads=1).predict(bytes)`` on every case and the lung segmenter on each one that
read. Exit status 1 if any case had a forbidden outcome.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests" / "fuzz"), str(HERE.parent / "tests")]  # fuzz_cases imports helpers

import fuzz_cases as fc  # noqa: E402
from fuzz_runner import run_cases  # noqa: E402


def _save(out: Path, outcome: str, case: fc.Case, detail: str, result: dict) -> None:
    folder = out / outcome.replace(":", "_")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{case.case_id}.bin").write_bytes(case.data)
    info = {**case.describe(), "outcomes": result, "detail": detail}
    (folder / f"{case.case_id}.json").write_text(json.dumps(info, indent=2))


def run(args: argparse.Namespace) -> int:
    seeds = fc.corpus(large=not args.small_only)
    cases = fc.generate(args.count, args.seed, seeds, start=args.start, large_weight=args.large_weight,
                        families=_families(args.families))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    by_family: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    warned: collections.Counter = collections.Counter()
    slowest: list[tuple[float, str]] = []
    max_rss = bad = done = 0
    t_start = time.time()
    for r in run_cases(cases, mode=args.mode, workers=args.workers, timeout=args.timeout,
                       wall_factor=args.wall_factor, mem_mb=args.mem_mb):
        done += 1
        for stage, outcome in r.outcomes.items():
            counts[stage][outcome] += 1
        by_family[r.case.family][r.main] += 1
        warned.update(r.warnings)
        max_rss = max(max_rss, r.rss_mb)
        slowest = sorted([*slowest, (r.seconds, r.case.case_id)], reverse=True)[:5]
        if r.bad:
            bad += 1
            _save(out, r.main, r.case, r.detail, r.outcomes)
            print(f"  {r.case.case_id} {r.case.family} {r.case.seed_name}: {r.outcomes} ({r.seconds:.2f}s)", flush=True)
        if done % args.report_every == 0:
            print(f"[{done}/{args.count}] {time.time() - t_start:.0f}s  read: {dict(counts['read'])}", flush=True)
    elapsed = time.time() - t_start
    summary = {
        "cases": done, "seed": args.seed, "start": args.start, "mode": args.mode, "families": args.families,
        "large_weight": args.large_weight, "small_only": args.small_only, "timeout_s": args.timeout,
        "mem_cap_mb": args.mem_mb, "seconds": round(elapsed, 1),
        "outcomes": {stage: dict(sorted(c.items())) for stage, c in counts.items()},
        "by_family": {f: dict(sorted(c.items())) for f, c in sorted(by_family.items())},
        "forbidden": bad, "max_worker_rss_mb": max_rss, "warnings_seen": dict(warned),
        "slowest": [[round(s, 2), c] for s, c in slowest],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 1 if bad else 0


def _families(spec: str | None) -> dict[str, int] | None:
    """``"shape:30,tag:20"`` -> weights (``None``: the default mix of every family)."""
    if not spec:
        return None
    out = {}
    for part in spec.split(","):
        name, _, weight = part.partition(":")
        if name not in fc.MUTATORS:
            raise SystemExit(f"unknown family {name!r} (choices: {', '.join(sorted(fc.MUTATORS))})")
        out[name] = int(weight or 1)
    return out


def replay(args: argparse.Namespace) -> int:
    seed_str, index = args.replay.rsplit("-", 1)
    seeds = fc.corpus(large=not args.small_only)
    case = fc.make_case(int(index), int(seed_str), seeds, large_weight=args.large_weight,
                        families=_families(args.families))
    print(json.dumps(case.describe(), indent=2))
    if args.write:
        Path(args.write).write_bytes(case.data)
    outcome, rg, err = fc.run_read(case)
    print("read:", outcome)
    if err is not None:
        traceback.print_exception(err)
    return 1 if outcome.startswith("untyped") else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=int, default=0, help="first case index (continue a run)")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="CPU seconds per input before it counts as a hang")
    p.add_argument("--wall-factor", type=float, default=12.0,
                   help="also a hang after this many times --timeout of wall time (the machine is shared)")
    p.add_argument("--mem-mb", type=int, default=3072, help="address space a worker may add per process (MiB)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--mode", choices=["read", "predict"], default="read")
    p.add_argument("--out", default="fuzz-out", help="folder for failing cases and summary.json")
    p.add_argument("--small-only", action="store_true", help="only the small seeds (no full-size fixtures)")
    p.add_argument("--large-weight", type=float, default=0.2, help="share of cases mutated from full-size films")
    p.add_argument("--families", default=None, metavar="NAME:WEIGHT,...",
                   help="mutation families and weights (default: all, see tests/fuzz/fuzz_cases.py)")
    p.add_argument("--report-every", type=int, default=500)
    p.add_argument("--replay", default=None, metavar="CASE_ID", help="re-run one case in this process")
    p.add_argument("--write", default=None, help="with --replay: save the case's bytes here")
    args = p.parse_args(argv)
    return replay(args) if args.replay else run(args)


if __name__ == "__main__":
    sys.exit(main())
