"""A second reader: dcmtk's presentation-state engine and SR parser read our objects as viewers do."""

from __future__ import annotations

import subprocess

from helpers import require_tool

from thoracic.dicom import build_results


def test_dcmtk_applies_the_gsps_to_the_image(require, phi_analysis, phi_file, tmp_path):
    """dcmp2pgm (dcmtk) loads the GSPS with the source image and lists every box and label."""
    require("highdicom")
    exe = require_tool("dcmp2pgm", "dcmtk")
    results = build_results(phi_analysis)
    paths = results.save(tmp_path)
    proc = subprocess.run([exe, "-v", "-p", str(paths["gsps"]), str(phi_file), str(tmp_path / "out.pgm")],
                          capture_output=True, text=True, timeout=120)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert (tmp_path / "out.pgm").stat().st_size > 200 * 240  # the rendered 8-bit image
    assert f"Number of graphic objects: {len(results.findings)}" in log
    for f in results.findings:
        assert f'"{f.label} {f.score:.2f}"' in log
    assert "80.25\\100.5, 170.75\\100.5, 170.75\\160, 80.25\\160" in log  # the Cardiomegaly box


def test_dcmtk_reads_the_sr_without_complaint(require, phi_analysis, tmp_path):
    require("highdicom")
    exe = require_tool("dsrdump", "dcmtk")
    path = build_results(phi_analysis).save(tmp_path)["sr"]
    proc = subprocess.run([exe, "-v", str(path)], capture_output=True, text=True, timeout=120)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert not [line for line in log.splitlines() if line.startswith(("W:", "E:", "F:"))], log
    assert '(8186001,SCT,"Cardiomegaly")' in log and '(36118008,SCT,"Pneumothorax")' in log
    assert "Certainty of Finding" in log and "SCOORD" in log
