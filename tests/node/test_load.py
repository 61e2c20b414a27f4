"""Eight modalities at once: eight storescu processes started together against the node (a real
subprocess), every instance answered and exactly one SR, GSPS and SEG per instance in Orthanc.
The full run (8 x 50 instances, throughput and memory) is ``bench/node_load.py``."""

from __future__ import annotations

import pydicom
from helpers import require_tool
from node_helpers import (
    MODALITY_AE,
    NodeProcess,
    make_copy,
    queue_counts,
    result_problems,
    send_concurrently,
    wait_until,
)

CLIENTS = 8
PER_CLIENT = 3


def test_eight_modalities_at_once_each_instance_one_sr_gsps_seg(tmp_path, orthanc_factory, radiographs):
    storescu = require_tool("storescu", "dcmtk")
    pacs = orthanc_factory("loadpacs")
    fast = [radiographs[0], radiographs[1], radiographs[4]]  # the 1024 x 1024 ones, three encodings
    batches = [[make_copy(fast[c % len(fast)], tmp_path / "send" / f"c{c}" / f"{i}.dcm") for i in range(PER_CLIENT)]
               for c in range(CLIENTS)]
    total = CLIENTS * PER_CLIENT
    node = NodeProcess(tmp_path / "spool", tmp_path / "node.log", [
        "--dest-ae", pacs.aet, "--dest-host", "127.0.0.1", "--dest-port", str(pacs.dicom_port),
        "--workers", "2", "--allow-ae", MODALITY_AE,
    ]).start()
    try:
        runs = send_concurrently(storescu, node.port, batches, timeout=120)
        wait_until(lambda: sum(queue_counts(node.spool).get(s, 0) for s in ("done", "failed")) >= total, 240,
                   f"{total} jobs finished (log: {node.log_path})")
    finally:
        node.stop()
    # the eight associations overlapped: each began before any had ended
    assert max(r.started for r in runs) < min(r.ended for r in runs)
    assert [r.returncode for r in runs] == [0] * CLIENTS, [r.stderr[-2000:] for r in runs]
    assert [r.responses for r in runs] == [("Success",) * PER_CLIENT] * CLIENTS
    assert queue_counts(node.spool) == {"done": total}
    studies = [str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID) for batch in batches for f in batch]
    assert len(set(studies)) == total
    by_study = pacs.results_by_study()
    assert result_problems(by_study, studies) == []
    assert sum(sum(c.values()) for c in by_study.values()) == 3 * total
    log = node.log_text()
    assert log.count("association from AE 'MODALITY' at 127.0.0.1 accepted") == CLIENTS
    assert "queue full" not in log


def test_result_problems_names_missing_duplicated_and_stray_results():
    from collections import Counter

    from node_helpers import ONE_EACH

    found = {"a": ONE_EACH, "b": Counter({"SR": 2, "PR": 1, "SEG": 1}), "stray": Counter({"SR": 1})}
    assert result_problems(found, ["a"]) == ["unexpected study: {'SR': 2, 'PR': 1, 'SEG': 1}",
                                             "unexpected study: {'SR': 1}"]
    assert result_problems(found, ["a", "b", "c"]) == ["study #1: {'SR': 2, 'PR': 1, 'SEG': 1}", "study #2: {}",
                                                       "unexpected study: {'SR': 1}"]
    assert result_problems({"a": ONE_EACH}, ["a"]) == []
