"""Faults a site sees, each with real processes: the node (``python -m thoracic.node``), dcmtk's
``storescu`` as the modality and Orthanc as the PACS, counted through Orthanc's REST API.

- the PACS killed and restarted in the middle of a run;
- a PACS that refuses (``0xA700``) and one that answers too late (a pynetdicom SCP in front of
  Orthanc: it stores, then answers after the node's timeout);
- the spool on a full filesystem (a small tmpfs mounted here, as root), and the results folder
  on a full one;
- the spool's database damaged, then ``--repair-spool``; locked by a real ``sqlite3`` process;
- SIGTERM while the node receives, analyzes and sends.

Each test checks, for every image the modality got a success for, exactly one SR, one GSPS and one
SEG in its study in Orthanc (0 lost, 0 duplicated), and prints a ``FAULT`` line with what it
measured (``pytest -s`` shows them; docs/reliability.md quotes them).
"""

from __future__ import annotations

import errno
import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from node_helpers import ONE_EACH, NodeProcess, free_port, make_copy, queue_counts, wait_until

from thoracic.node.worker import backoff_delay

def _study(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def _tally(pacs, images: list[Path]) -> dict[str, int]:
    """What the PACS holds for ``images``: how many lack a result (lost) and how many results are
    there more than once (duplicated), counted by Modality in each image's study."""
    by_study = pacs.results_by_study()
    lost = duplicated = 0
    for path in images:
        held = by_study.get(_study(path), Counter())
        lost += sum(1 for kind in ONE_EACH if held[kind] == 0)
        duplicated += sum(max(0, n - 1) for n in held.values())
    return {"images": len(images), "instances": sum(sum(c.values()) for c in by_study.values()),
            "lost": lost, "duplicated": duplicated}


def _report(fault: str, **figures: object) -> None:
    print(f"\nFAULT {fault}: " + json.dumps(figures, sort_keys=True))


def _successes(runs) -> int:
    return sum(r.stderr.count("Received Store Response (Success)") for r in runs)


def _refusals(runs) -> int:
    return sum(r.stderr.count("Received Store Response (Refused: OutOfResources)") for r in runs)


def _status(spool: Path) -> list[str]:
    """``thoracic dicom-node --status`` (as ``python -m thoracic.node``), its lines."""
    out = subprocess.run([sys.executable, "-m", "thoracic.node", "--spool", str(spool), "--status"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def _retrying(lines: list[str]) -> list[tuple[str, int, str]]:
    """The jobs ``--status`` lists as retrying: (state, attempts, last error)."""
    out = []
    for line in lines[lines.index("retrying:") + 1:] if "retrying:" in lines else []:
        if not line.startswith("  job "):
            break
        _, state, attempts, _, error = line.strip().split("\t")
        out.append((state, int(attempts.split()[1]), error))
    return out


def _status_until(spool: Path, ok, what: str, timeout: float = 120) -> list[str]:
    """Poll ``--status`` until ``ok(its retrying jobs)``; returns its lines."""
    def check():
        lines = _status(spool)
        return lines if ok(_retrying(lines)) else None

    return wait_until(check, timeout, what)


def _retry_lines(log: str) -> dict[str, list[tuple[int, float]]]:
    """The retries the node logged, per job: (attempt, delay) in order."""
    out: dict[str, list[tuple[int, float]]] = {}
    for m in re.finditer(r"(job \d+ \[\w+\]): sending to \S+ failed .*?; attempt (\d+) of \d+, next in ([\d.]+) s", log):
        out.setdefault(m.group(1), []).append((int(m.group(2)), float(m.group(3))))
    return out


def _images(tmp_path: Path, radiographs, n: int) -> list[Path]:
    fast = [radiographs[0], radiographs[1]]  # the 1024 x 1024 ones
    return [make_copy(fast[i % 2], tmp_path / "send" / f"{i}.dcm") for i in range(n)]


def _node(tmp_path: Path, args: list[str], port: int | None = None) -> NodeProcess:
    """The node on ``tmp_path/spool`` with ``args``, started (again: its ``port``); its log in ``tmp_path``."""
    return NodeProcess(tmp_path / "spool", tmp_path / "node.log", args, port=port).start()


def _dest(pacs_aet: str, port: int) -> list[str]:
    return ["--dest-ae", pacs_aet, "--dest-host", "127.0.0.1", "--dest-port", str(port), "--min-score", "0.5"]


# --- the PACS down, refusing, slow ------------------------------------------------------------------
# pynetdicom 3.0.4 leaves the socket of a refused TCP connection open (a ResourceWarning at exit)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_pacs_killed_and_restarted_mid_run(tmp_path, orthanc_factory, storescu, radiographs):
    pacs = orthanc_factory("outage")
    n = 6
    images = _images(tmp_path, radiographs, n)
    node = _node(tmp_path, [*_dest(pacs.aet, pacs.dicom_port), "--backoff", "0.25", "--max-backoff", "1",
                            "--max-attempts", "100", "--send-timeout", "5"])
    spool = node.spool
    try:
        runs = storescu(node.port, images)
        assert _successes(runs) == n
        wait_until(lambda: queue_counts(spool).get("done", 0) >= 1, 120, "a first job delivered")
        pacs.kill()
        down = time.monotonic()
        at_kill = queue_counts(spool)
        # the queue, seen from outside while the PACS is down: jobs waiting with their attempts
        lines = _status_until(spool, lambda jobs: any(a >= 4 for _, a, _ in jobs), "a job retried four times")
        retrying = _retrying(lines)
        assert retrying and all(state == "sending" and "SendError: " in error for state, _, error in retrying)
        assert "node\trunning" in lines
        time.sleep(max(0.0, 5.0 - (time.monotonic() - down)))  # down at least 5 s, several capped retries
        pacs.start()
        outage = time.monotonic() - down
        wait_until(lambda: queue_counts(spool).get("done", 0) == n, 120, "every job delivered after the restart")
    finally:
        rc = node.stop()
    assert rc == 0
    tally = _tally(pacs, images)
    assert (tally["lost"], tally["duplicated"], tally["instances"]) == (0, 0, 3 * n), tally
    retries = _retry_lines(node.log_text())
    delays = [d for job in retries.values() for _, d in job]
    assert max(delays) == 1.0 and all(d <= 1.0 for d in delays)  # capped
    for job in retries.values():  # doubling from --backoff up to the cap, attempt by attempt
        assert all(d == pytest.approx(backoff_delay(a, 0.25, 1.0), abs=0.06) for a, d in job)
    _report("pacs-killed", accepted=_successes(runs), pending_at_kill=n - at_kill.get("done", 0),
            outage_s=round(outage, 1), retries=len(delays), max_attempt=max(a for j in retries.values() for a, _ in j),
            **tally)


class FlakyPacs:
    """A DICOM peer in front of Orthanc that follows a script, one step per C-STORE it receives:
    ``refuse`` answers 0xA700 (out of resources) and stores nothing; ``slow`` stores the instance in
    Orthanc, then answers only after ``delay`` seconds (after the node gave up); once the script
    is done, every C-STORE is stored in Orthanc and answered with Orthanc's status."""

    def __init__(self, pacs, script: list[str], delay: float):
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

        self.pacs, self.script, self.delay = pacs, list(script), delay
        self.arrivals: list[tuple[float, str, str, int]] = []  # (time, SOP Instance UID, what was done, association)
        self.lock = threading.Lock()
        ae = AE(ae_title="FLAKY")
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = self.server.server_address[1]

    def _store(self, event) -> int:
        with self.lock:
            step = self.script.pop(0) if self.script else "store"
            self.arrivals.append((time.monotonic(), str(event.request.AffectedSOPInstanceUID), step, id(event.assoc)))
        if step == "refuse":
            return 0xA700
        status = self._forward(event)
        if step == "slow":
            time.sleep(self.delay)
        return status

    def _forward(self, event) -> int:
        from pynetdicom import AE

        ds = event.dataset
        ds.file_meta = event.file_meta
        ae = AE(ae_title="FLAKY")
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", self.pacs.dicom_port, ae_title=self.pacs.aet)
        assert assoc.is_established
        try:
            return int(assoc.send_c_store(ds).Status)
        finally:
            assoc.release()

    def close(self) -> None:
        self.server.shutdown()


def test_a_pacs_that_refuses_and_answers_too_late(tmp_path, orthanc_factory, storescu, radiographs):
    pacs = orthanc_factory("behindflaky")
    script = ["refuse", "refuse", "slow", "refuse", "refuse", "slow", "refuse"]
    flaky = FlakyPacs(pacs, script, delay=2.5)
    n = 2
    images = _images(tmp_path, radiographs, n)
    node = _node(tmp_path, [*_dest("FLAKY", flaky.port), "--backoff", "0.2", "--max-backoff", "0.8",
                            "--max-attempts", "50", "--send-timeout", "1"])
    spool = node.spool
    try:
        runs = storescu(node.port, images)
        assert _successes(runs) == n
        seen = _retrying(_status_until(spool, lambda jobs: any("0xA700" in e for _, _, e in jobs), "a refusal shown"))
        assert any(state == "sending" and "status 0xA700 (Refused: Out of Resources)" in e for state, _, e in seen)
        wait_until(lambda: queue_counts(spool).get("done", 0) == n, 120, "every job delivered")
    finally:
        rc = node.stop()
        time.sleep(flaky.delay)  # the last late answer
        flaky.close()
    assert rc == 0
    tally = _tally(pacs, images)
    assert (tally["lost"], tally["duplicated"], tally["instances"]) == (0, 0, 3 * n), tally
    log = node.log_text()
    assert log.count("status 0xA700 (Refused: Out of Resources)") == script.count("refuse")
    assert log.count("no answer: aborted, or none within 1 s") == script.count("slow")
    retries = _retry_lines(log)
    delays = [d for job in retries.values() for _, d in job]
    assert len(delays) == len(script) and max(delays) == 0.8  # every fault retried; the cap reached
    for job in retries.values():
        assert all(d == pytest.approx(backoff_delay(a, 0.2, 0.8), abs=0.06) for a, d in job)
    # the waits really happened: each job's next try reached the PACS no sooner than its delay
    outputs = _outputs_by_job(spool)
    gaps = []
    for tag, steps in retries.items():
        uids = outputs[int(tag.split()[1])]
        starts: dict[int, float] = {}  # each try is one association: when its first C-STORE came
        for t, uid, _, assoc in flaky.arrivals:
            if uid in uids:
                starts.setdefault(assoc, t)
        tries = sorted(starts.values())
        assert len(tries) == len(steps) + 1  # every failed try, then the one that stored all
        for (_, delay), before, after in zip(steps, tries, tries[1:], strict=False):
            gaps.append(round(after - before, 2))
            assert after - before >= delay - 0.05
    stores = Counter(uid for _, uid, step, _ in flaky.arrivals if step != "refuse")
    _report("pacs-refuses-and-is-slow", accepted=_successes(runs), refused_0xA700=script.count("refuse"),
            late_answers=script.count("slow"), resent_after_a_late_answer=sum(n - 1 for n in stores.values()),
            delays_s=sorted(delays), shortest_gap_s=min(gaps), **tally)


def _outputs_by_job(spool: Path) -> dict[int, set[str]]:
    db = sqlite3.connect(f"file:{spool / 'queue.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT id, outputs FROM jobs").fetchall()
    finally:
        db.close()
    return {i: {o["sop_instance_uid"] for o in json.loads(out)} for i, out in rows}


# --- a full disk ------------------------------------------------------------------------------------
@pytest.fixture
def small_fs():
    """``small_fs(path, mib)``: a tmpfs of ``mib`` MiB mounted at ``path`` (root only; unmounted after)."""
    mounted: list[Path] = []

    def mount(path: Path, mib: int) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m,mode=0700", "tmpfs", str(path)],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): {out.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _fill(folder: Path) -> Path:
    """Write a ballast file in ``folder`` until its filesystem is full."""
    ballast = folder / ".ballast"
    with open(ballast, "wb", buffering=0) as fh:
        for size in (1 << 20, 1 << 12, 1):
            while True:
                try:
                    fh.write(b"\0" * size)
                except OSError as err:
                    assert err.errno == errno.ENOSPC
                    break
    return ballast


def test_a_full_spool_refuses_images_until_space_returns(tmp_path, small_fs, orthanc_factory, storescu, radiographs):
    pacs = orthanc_factory("fullspool")
    spool = small_fs(tmp_path / "spool", 48)
    images = _images(tmp_path, radiographs, 4)
    node = _node(tmp_path, _dest(pacs.aet, pacs.dicom_port))
    try:
        first = storescu(node.port, images[:1])
        wait_until(lambda: queue_counts(spool).get("done", 0) == 1, 120, "the first image delivered")
        ballast = _fill(spool)
        refused = storescu(node.port, images[1:])
        assert _refusals(refused) == 3 and _successes(refused) == 0  # a failure status, never a silent success
        assert queue_counts(spool) == {"done": 1}  # nothing of them queued...
        assert [p.name for p in (spool / "in").iterdir()] == []  # ...or left on the disk
        assert node.proc.poll() is None and "received\t0" in _status(spool)  # the node and --status live on
        ballast.unlink()  # space returns; the modality sends again
        again = storescu(node.port, images[1:])
        assert _successes(again) == 3
        wait_until(lambda: queue_counts(spool).get("done", 0) == 4, 120, "all delivered after space returned")
    finally:
        rc = node.stop()
    assert rc == 0
    log = node.log_text()
    assert log.count("No space left on device); nothing kept, answered out of resources (0xA700)") == 3
    tally = _tally(pacs, images)
    assert (tally["lost"], tally["duplicated"], tally["instances"]) == (0, 0, 12), tally
    _report("spool-disk-full", accepted_before=_successes(first), refused_0xA700_while_full=_refusals(refused),
            accepted_after=_successes(again), **tally)


def test_results_that_cannot_be_saved_wait_for_space(tmp_path, small_fs, orthanc_factory, storescu, radiographs):
    pacs = orthanc_factory("fullout")
    spool = tmp_path / "spool"
    out = small_fs(spool / "out", 16)  # only the results' folder on the small filesystem
    images = _images(tmp_path, radiographs, 2)
    node = _node(tmp_path, [*_dest(pacs.aet, pacs.dicom_port), "--backoff", "0.25", "--max-backoff", "1",
                            "--max-attempts", "100"])
    try:
        ballast = _fill(out)
        runs = storescu(node.port, images)
        assert _successes(runs) == 2  # the images are spooled (another filesystem)
        jobs = _retrying(_status_until(spool, lambda jobs: len(jobs) == 2 and all(a >= 3 for _, a, _ in jobs),
                                       "both analyses retried three times"))
        assert all(e == "analysis: OSError: No space left on device" for _, _, e in jobs), jobs
        assert set(queue_counts(spool)) <= {"received", "analyzing"}  # nothing saved, nothing sent
        ballast.unlink()
        wait_until(lambda: queue_counts(spool).get("done", 0) == 2, 120, "delivered once the results fit")
    finally:
        rc = node.stop()
    assert rc == 0
    tally = _tally(pacs, images)
    assert (tally["lost"], tally["duplicated"], tally["instances"]) == (0, 0, 6), tally
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no half-saved folder left
    _report("results-disk-full", accepted=_successes(runs), **tally)


# --- the spool's database ---------------------------------------------------------------------------
def _run_node(spool: Path, args: list[str], port: int, timeout: float = 120) -> subprocess.CompletedProcess:
    """The node in the foreground, for a start that must fail."""
    return subprocess.run([sys.executable, "-m", "thoracic.node", "--spool", str(spool), "--host", "127.0.0.1",
                           "--port", str(port), *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_damaged_spool_database_stops_the_node_until_repaired(tmp_path, orthanc_factory, storescu, radiographs):
    n = 3
    images = _images(tmp_path, radiographs, n)
    spool = tmp_path / "spool"
    pacs_port = free_port()  # the PACS is down: the results wait in the spool
    args = [*_dest("LATEPACS", pacs_port), "--backoff", "0.2", "--max-backoff", "0.5", "--max-attempts", "100"]
    node = _node(tmp_path, args)
    runs = storescu(node.port, images)
    assert _successes(runs) == n
    wait_until(lambda: queue_counts(spool) == {"sending": n}, 120, "results saved, waiting for the PACS")
    assert node.stop() == 0
    db = spool / "queue.sqlite3"
    damaged = bytearray(db.read_bytes())
    damaged[:100] = b"\xa5" * 100
    db.write_bytes(bytes(damaged))
    files = sorted(str(p.relative_to(spool)) for p in spool.rglob("*.dcm"))
    assert len(files) == n * 4  # each image and its three results

    refused = _run_node(spool, args, node.port)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "error: " in refused.stderr and "the queue database is damaged (file is not a database)" in refused.stderr
    assert f"thoracic dicom-node --spool {spool} --repair-spool" in refused.stderr
    assert db.read_bytes() == bytes(damaged)  # never reset...
    assert sorted(str(p.relative_to(spool)) for p in spool.rglob("*.dcm")) == files  # ...and nothing deleted
    status = subprocess.run([sys.executable, "-m", "thoracic.node", "--spool", str(spool), "--status"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert status.returncode == 2 and "--repair-spool" in status.stderr

    repair = subprocess.run([sys.executable, "-m", "thoracic.node", "--spool", str(spool), "--repair-spool"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert repair.returncode == 0, repair.stderr
    assert f"{n} job(s) rebuilt from saved results: sent again (the same instances)" in repair.stdout
    kept = [p for p in spool.glob("damaged-*/queue.sqlite3")]
    assert len(kept) == 1 and kept[0].read_bytes() == bytes(damaged)

    pacs = orthanc_factory("latepacs", dicom_port=pacs_port)  # the PACS is back
    node = _node(tmp_path, args, port=node.port)
    try:
        wait_until(lambda: queue_counts(spool).get("done", 0) == n, 120, "delivered after the repair")
    finally:
        assert node.stop() == 0
    tally = _tally(pacs, images)
    assert (tally["lost"], tally["duplicated"], tally["instances"]) == (0, 0, 3 * n), tally
    _report("spool-db-damaged", accepted=_successes(runs), start_exit_status=refused.returncode,
            rebuilt_by_repair=n, **tally)


def test_a_locked_spool_database_is_a_clear_error_at_start(tmp_path):
    from helpers import require_tool

    from thoracic.node.queue import JobQueue

    spool = tmp_path / "spool"
    JobQueue(spool).close()
    args = ["--stowrs", "http://127.0.0.1:9/dicom-web"]
    port = free_port()
    shell = subprocess.Popen([require_tool("sqlite3", "sqlite3"), str(spool / "queue.sqlite3")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        shell.stdin.write("BEGIN IMMEDIATE; UPDATE jobs SET error = error; SELECT 'holding';\n")
        shell.stdin.flush()
        assert shell.stdout.readline().strip() == "holding"
        started = time.monotonic()
        refused = _run_node(spool, args, port)
        took = time.monotonic() - started
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert "the queue database is locked by another process" in refused.stderr
        assert f"fuser -v {spool / 'queue.sqlite3'}" in refused.stderr
        assert "received\t0" in _status(spool)  # --status still reads it
    finally:
        shell.stdin.write("ROLLBACK;\n.quit\n")
        shell.stdin.close()
        shell.wait(10)
        shell.stdout.close()
    node = _node(tmp_path, args, port=port)  # free again: it starts
    assert node.stop() == 0
    _report("spool-db-locked", start_exit_status=refused.returncode, seconds_to_the_error=round(took, 1))


# --- SIGTERM -------------------------------------------------------------------------------------------
def test_sigterm_while_receiving_analyzing_and_sending(tmp_path, orthanc_factory, storescu, radiographs):
    pacs = orthanc_factory("sigterm")
    n = 8
    images = _images(tmp_path, radiographs, n)
    spool = tmp_path / "spool"
    args = _dest(pacs.aet, pacs.dicom_port)
    node = _node(tmp_path, args)
    sent: list = []
    sender = threading.Thread(target=lambda: sent.extend(storescu(node.port, images)))
    sender.start()
    # 1: while images arrive (the node finishes the association in progress, then stops)
    wait_until(lambda: sum(queue_counts(spool).values()) >= 1, 60, "the first image spooled", interval=0.005)
    states = [queue_counts(spool)]
    assert node.stop() == 0  # SIGTERM; exit status 0
    sender.join(120)
    moments = [lambda c: c.get("sending", 0) + c.get("done", 0) >= 1,  # 2: while results are written or sent
               lambda c: c.get("done", 0) >= n // 2]  # 3: in the middle of the rest
    for when in moments:
        node = _node(tmp_path, args, port=node.port)
        if when is moments[0]:  # the modality sends again what was not answered with success
            sent += storescu(node.port, images)
        wait_until(lambda w=when: w(queue_counts(spool)), 120, "the moment for SIGTERM", interval=0.005)
        states.append(queue_counts(spool))
        assert node.stop() == 0  # SIGTERM; exit status 0
    node = _node(tmp_path, args, port=node.port)
    try:
        wait_until(lambda: queue_counts(spool).get("done", 0) == n, 120, "every job done")
    finally:
        assert node.stop() == 0
    log = node.log_text()
    starts = [tuple(map(int, m)) for m in re.findall(r"queue \S+: (\d+) received, (\d+) sending, (\d+) done", log)]
    assert len(starts) == 4 and all(r + s < n and r + s > 0 for r, s, _ in starts[1:]), starts  # work was left
    assert log.count("SIGTERM received; stopping") == 4 and log.count("DICOM node stopped") == 4
    tally = _tally(pacs, images)
    assert (tally["lost"], tally["duplicated"], tally["instances"]) == (0, 0, 3 * n), tally
    assert queue_counts(spool) == {"done": n}
    _report("sigterm", images=n, sigterms=4, answered_success=_successes(sent),
            states_at_sigterm=states, pending_at_restart=[r + s for r, s, _ in starts[1:]], **{k: v for k, v in tally.items() if k != "images"})
