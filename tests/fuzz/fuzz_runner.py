"""Run fuzz cases in worker processes: per-case CPU-time limit, address-space cap, crash isolation.

Shared by the short fuzz tests and ``scripts/fuzz.py``. Each worker reads cases from a pipe and
answers with the outcome of every stage (``read``; with ``mode="predict"`` also ``predict`` and,
for inputs that read, ``segment``). A worker that spends more than ``timeout`` CPU seconds on one
case (or ``wall_factor`` times that in wall time: the machine may be shared) is killed and the case
is a ``hang``; one that dies is a ``crash``; ``MemoryError`` under the ``RLIMIT_AS`` cap is
``memory``; a radiograph that is not finite ``float32`` in [0, 1] is ``bad-output``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

import fuzz_cases as fc

FORBIDDEN = ("hang", "memory", "crash", "bad-output")


def forbidden(outcome: str) -> bool:
    """Whether an outcome is a bug: not ``ok`` and not a typed thoracic error."""
    return outcome.startswith("untyped:") or outcome in FORBIDDEN


@dataclass
class Result:
    """What became of one case."""

    case: fc.Case
    outcomes: dict[str, str]
    detail: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    rss_mb: int = 0

    @property
    def main(self) -> str:
        """The first forbidden outcome, else the read outcome."""
        return next((o for o in self.outcomes.values() if forbidden(o)), self.outcomes.get("read", "?"))

    @property
    def bad(self) -> bool:
        return any(forbidden(o) for o in self.outcomes.values())


def _shorten(message: str) -> str:
    """A warning's message without its values (so that counts group), at most 90 characters."""
    import re

    return re.sub(r"'[^']*'|\d+", "_", message)[:90]


def _read_window(data: bytes, options: dict):
    """The read the lung model's chain asks for (``normalize="window"``)."""
    from thoracic.io import ReadConfig, read

    return read(data, ReadConfig(**{**options, "normalize": "window"}), image_id="fuzz")


def _stage(fn) -> tuple[str, str]:
    from thoracic.errors import ThoracicError

    try:
        fn()
    except MemoryError:
        return "memory", ""
    except ThoracicError as e:
        return type(e).__name__, ""
    except Exception as e:  # noqa: BLE001 - reported
        return f"untyped:{type(e).__name__}", "".join(traceback.format_exception(e))
    return "ok", ""


def _selftest(what: str | None, mem_mb: int) -> None:
    """Misbehave on purpose (the harness's own tests): spin, block, crash or exhaust memory."""
    if what == "spin":
        while True:
            pass
    elif what == "block":
        time.sleep(3600)
    elif what == "crash":
        os.abort()
    elif what == "memory":
        bytearray(mem_mb * 2**20 * 2)  # beyond the cap: MemoryError


def _worker(conn, mode: str, mem_mb: int) -> None:
    """Answer cases from ``conn`` until it closes or sends ``None``."""
    import warnings

    import psutil

    predictor = segmenter = None
    if mode == "predict":
        from thoracic.anatomy import default_segmenter
        from thoracic.inference.predictor import Predictor

        predictor = Predictor.load(threads=1)
        segmenter = default_segmenter()
        warm = (fc.SAMPLES / "00000377_004.jpg").read_bytes()  # first runs allocate: not timed
        segmenter.segment(_read_window(warm, {}))
        predictor.predict(warm)
    import thoracic.io  # noqa: F401 - imported before the clock starts

    cap = psutil.Process().memory_info().vms + mem_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        case = fc.Case(**msg)
        out: dict[str, str] = {}
        detail = ""
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                _selftest(case.recipe.get("selftest"), mem_mb)
                outcome, rg, err = fc.run_read(case)
            except MemoryError as e:  # outside read(): the self-test
                outcome, rg, err = "memory", None, e
            if isinstance(err, MemoryError):
                outcome = "memory"
            elif err is not None and outcome.startswith("untyped"):
                detail = "".join(traceback.format_exception(err))
            if rg is not None and (problem := fc.check_radiograph(rg)):
                outcome, detail = "bad-output", problem
            out["read"] = outcome
            if predictor is not None:
                out["predict"], d = _stage(lambda: predictor.predict(case.data, read=fc.read_options(case)))
                detail += f"\n[predict]\n{d}" if d else ""
                if rg is not None:
                    out["segment"], d = _stage(lambda: segmenter.segment(_read_window(case.data, case.options)))
                    detail += f"\n[segment]\n{d}" if d else ""
        warned = sorted({f"{w.category.__name__}: {_shorten(str(w.message))}" for w in caught})
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        conn.send((out, detail, time.perf_counter() - t0, warned, rss))


def _low_priority(pid: int) -> None:
    try:  # autogroup scheduling: nice alone does not yield to other sessions
        Path(f"/proc/{pid}/autogroup").write_text("19")
    except OSError:
        pass


class _Worker:
    def __init__(self, ctx, mode: str, mem_mb: int) -> None:
        import psutil

        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, mode, mem_mb), daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(180):
            self.kill()
            raise RuntimeError("a fuzz worker did not start within 180 s")
        self.conn.recv()
        _low_priority(self.proc.pid)
        self.ps = psutil.Process(self.proc.pid)
        self.case: fc.Case | None = None
        self.t0 = self.cpu0 = 0.0

    def cpu(self) -> float:
        """CPU seconds (all threads) this worker has used so far."""
        try:
            t = self.ps.cpu_times()
        except Exception:  # noqa: BLE001 - it just died: the pipe tells
            return 0.0
        return t.user + t.system

    def send(self, case: fc.Case) -> None:
        self.case, self.t0, self.cpu0 = case, time.monotonic(), self.cpu()
        self.conn.send({"case_id": case.case_id, "family": case.family, "seed_name": case.seed_name,
                        "data": case.data, "options": case.options, "recipe": case.recipe})

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.conn.close()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.kill()


def run_cases(cases: Iterable[fc.Case], *, mode: str = "read", workers: int = 1, timeout: float = 5.0,
              wall_factor: float = 12.0, mem_mb: int = 3072, context: str = "fork") -> Iterator[Result]:
    """Yield a :class:`Result` per case, in completion order.

    ``context``: ``"fork"`` is fastest from a plain script; from a process that already runs
    threads (a test session with ONNX Runtime loaded) use ``"spawn"``.
    """
    ctx = mp.get_context(context)
    pool = [_Worker(ctx, mode, mem_mb) for _ in range(workers)]
    pending = iter(cases)

    def feed(w: _Worker) -> None:
        case = next(pending, None)
        w.case = None
        if case is not None:
            w.send(case)

    try:
        for w in pool:
            feed(w)
        while any(w.case is not None for w in pool):
            busy = [w for w in pool if w.case is not None]
            ready = wait([w.conn for w in busy], timeout=0.25)
            now = time.monotonic()
            for i, w in enumerate(pool):
                case = w.case
                if case is None:
                    continue
                if w.conn in ready:
                    try:
                        out, detail, seconds, warned, rss = w.conn.recv()
                    except (EOFError, OSError):
                        w.proc.join(5)
                        yield Result(case, {"read": "crash"}, f"worker exit code {w.proc.exitcode}", now - w.t0)
                        w.kill()
                        pool[i] = _Worker(ctx, mode, mem_mb)
                        feed(pool[i])
                        continue
                    cpu = w.cpu() - w.cpu0
                    if cpu > timeout:  # it finished, but over the budget: a hang all the same
                        out = {**out, "read": "hang"}
                        detail += f"\nanswered after {cpu:.1f} CPU s"
                    yield Result(case, out, detail, seconds, warned, rss)
                    feed(w)
                elif (cpu := w.cpu() - w.cpu0) > timeout or now - w.t0 > wall_factor * timeout:
                    # CPU seconds, not wall time, so that a busy neighbour cannot turn a slow case
                    # into a "hang"; the wall-time bound catches one that blocks
                    yield Result(case, {"read": "hang"}, f"no answer after {cpu:.1f} CPU s / {now - w.t0:.1f} s",
                                 now - w.t0)
                    w.kill()
                    pool[i] = _Worker(ctx, mode, mem_mb)
                    feed(pool[i])
    finally:
        for w in pool:
            w.close()
