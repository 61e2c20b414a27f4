"""Without highdicom: de-identification and the UID helpers work, building results says what to install."""

from __future__ import annotations

from helpers import run_without

SCRIPT = """
    import sys
    from types import SimpleNamespace

    from pydicom.dataset import Dataset
    from thoracic.dicom import build_results, deidentify, safe_uid_name
    from thoracic.errors import MissingDependencyError

    ds = Dataset(); ds.PatientID = "P1"; ds.StudyInstanceUID = "1.2.3"
    assert deidentify(ds, salt="s").StudyInstanceUID.startswith("2.25.")
    assert safe_uid_name("1.2.3") == "1.2.3.dcm"
    rg = SimpleNamespace(dataset=Dataset(), source="x.dcm", format="dicom")
    try:
        build_results(SimpleNamespace(radiograph=rg, image_id="x"))
    except MissingDependencyError as err:
        assert "thoracic[dicom]" in str(err) and "highdicom" in str(err), err
    else:
        raise SystemExit("no MissingDependencyError")
    assert "highdicom" not in sys.modules
    print("OK")
    """


def test_works_without_highdicom_until_results_are_built():
    proc = run_without(("highdicom",), SCRIPT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"
