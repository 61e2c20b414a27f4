"""De-identification (PS3.15 E.1.1 basic profile) of an exported image and of the result objects."""

from __future__ import annotations

import datetime

import numpy as np
import pydicom
import pytest
from dicom_helpers import dciodvfy_errors, dciodvfy_unexplained
from helpers import DEID_FRAGMENTS, ORIGINAL_UIDS, PRIVATE_VALUE, SAMPLES, SOP_UID, STUDY_UID, phi_radiograph
from pydicom.dataset import Dataset

from thoracic.dicom import build_results, deidentify, deidentify_file, pseudonym
from thoracic.errors import ConfigError, ReadError

SALT = "site secret 42"


def _leaks(data: bytes) -> list[str]:
    return [s for s in (*DEID_FRAGMENTS, *ORIGINAL_UIDS) if s.encode() in data]


def test_image_file_has_no_phi_left(phi_file, tmp_path):
    assert _leaks(phi_file.read_bytes())  # the fixture really carries PHI and the UIDs
    out = deidentify_file(phi_file, tmp_path / "anon", salt=SALT)
    assert out.parent == tmp_path / "anon" and out.name.startswith("2.25.") and out.suffix == ".dcm"
    data = out.read_bytes()
    assert _leaks(data) == []
    anon = pydicom.dcmread(out)
    original = pydicom.dcmread(phi_file)
    np.testing.assert_array_equal(anon.pixel_array, original.pixel_array)  # pixels untouched
    assert anon.PatientIdentityRemoved == "YES"
    assert anon.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert anon.PatientID == pseudonym("PID-31415926", SALT) and str(anon.PatientName) == anon.PatientID + "^"
    assert anon.file_meta.MediaStorageSOPInstanceUID == anon.SOPInstanceUID
    for keyword in ("OtherPatientIDs", "OtherPatientIDsSequence", "InstitutionAddress", "PatientAddress",
                    "ImageComments", "StudyDescription", "PatientAge", "PatientTelephoneNumbers"):
        assert keyword not in anon, keyword
    for keyword in ("AccessionNumber", "PatientBirthDate", "InstitutionName", "ReferringPhysicianName",
                    "StudyID", "StudyDate"):
        assert anon[keyword].value in ("", None), keyword  # type 2: kept, emptied
    assert not any(elem.tag.is_private for elem in anon.iterall())
    assert PRIVATE_VALUE.encode() not in data
    # relations inside the file: the source reference is a replaced, not a dropped, UID
    assert anon.SourceImageSequence[0].ReferencedSOPInstanceUID.startswith("2.25.")
    assert (anon.BodyPartExamined, anon.ViewPosition, anon.Modality) == ("CHEST", "PA", "CR")
    assert dciodvfy_errors(out) == []


def test_results_are_deidentified_consistently_with_the_image(require, phi_analysis, phi_file, tmp_path):
    require("highdicom")
    image = pydicom.dcmread(deidentify_file(phi_file, tmp_path / "image", salt=SALT))
    results = build_results(phi_analysis, deidentify=True, salt=SALT, institution_name="Saint Nowhere General")
    paths = results.save(tmp_path / "results")
    sr, gsps, seg = (pydicom.dcmread(paths[k]) for k in ("sr", "gsps", "seg"))
    today = datetime.date.today().strftime("%Y%m%d").encode()
    for path in paths.values():
        assert _leaks(path.read_bytes()) == [], path.name
        assert today not in path.read_bytes(), path.name  # when it was made ~ when the patient was imaged
        assert dciodvfy_unexplained(path) == [], path.name
    for ds in (sr, gsps, seg):
        assert ds.StudyInstanceUID == image.StudyInstanceUID != STUDY_UID
        assert ds.PatientID == image.PatientID and ds.PatientIdentityRemoved == "YES"
        assert "InstitutionName" not in ds or not ds.InstitutionName
    anon_sop = image.SOPInstanceUID
    assert anon_sop != SOP_UID
    refs = [e.value for e in sr.iterall() if e.keyword == "ReferencedSOPInstanceUID"]
    assert refs and set(refs) == {anon_sop}
    assert gsps.ReferencedSeriesSequence[0].SeriesInstanceUID == image.SeriesInstanceUID
    assert gsps.ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID == anon_sop
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == anon_sop
    # the identified results of the same analysis do carry the originals (the test can fail)
    plain = build_results(phi_analysis)
    assert plain.sr.StudyInstanceUID == STUDY_UID and plain.sr.PatientID == "PID-31415926"


def test_deterministic_under_one_salt(phi_file, tmp_path):
    a = deidentify_file(phi_file, tmp_path / "a", salt=SALT)
    b = deidentify_file(phi_file, tmp_path / "b", salt=SALT)
    assert a.name == b.name and a.read_bytes() == b.read_bytes()
    c = pydicom.dcmread(deidentify_file(phi_file, tmp_path / "c", salt="another site"))
    first = pydicom.dcmread(a)
    assert c.StudyInstanceUID != first.StudyInstanceUID and c.PatientID != first.PatientID
    # without a salt: a secret of this process, consistent within it
    ds = pydicom.dcmread(phi_file)
    assert deidentify(ds).StudyInstanceUID == deidentify(ds).StudyInstanceUID != first.StudyInstanceUID


def test_input_is_not_changed_and_meta_less_datasets_work(phi_file):
    ds = pydicom.dcmread(phi_file)
    before = ds.to_json_dict()
    anon = deidentify(ds, salt=SALT)
    assert ds.to_json_dict() == before and anon.PatientID != ds.PatientID
    bare = Dataset()
    bare.PatientName = "Doe^John"
    bare.StudyInstanceUID = "1.2.3"
    bare.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    out = deidentify(bare, salt=SALT)
    assert out.PatientName == "ANONYMOUS^" and out.PatientID == "ANONYMOUS"  # no patient ID to pseudonymize
    assert out.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1" and out.StudyInstanceUID.startswith("2.25.")


def test_overlays_curves_and_sr_content_are_removed():
    ds = Dataset()
    ds.PatientID = "X"
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60003000, "OW", b"\x01" * 8)
    ds.add_new(0x50000005, "US", 2)
    item = Dataset()
    item.TextValue = "Jane Doe said"
    ds.ContentSequence = [item]
    out = deidentify(ds, salt=SALT)
    assert not any(e.tag.group in (0x6000, 0x5000) for e in out) and "ContentSequence" not in out


def test_retain_uids_option(phi_file):
    anon = deidentify(pydicom.dcmread(phi_file), keep_uids=True, salt=SALT)
    assert anon.StudyInstanceUID == STUDY_UID and anon.SOPInstanceUID == SOP_UID
    assert [i.CodeValue for i in anon.DeidentificationMethodCodeSequence] == ["113100", "113110"]
    assert anon.PatientID != "PID-31415926"


def test_bad_arguments(phi_file, tmp_path):
    ds = pydicom.dcmread(phi_file)
    with pytest.raises(ConfigError, match="did you mean 'basic'"):
        deidentify(ds, profile="basc")
    with pytest.raises(ConfigError, match="salt"):
        deidentify(ds, salt="")
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a dicom file at all")
    with pytest.raises(ReadError) as err:
        deidentify_file(junk, tmp_path / "out")
    assert "junk.dcm" in str(err.value)


@pytest.mark.parametrize("name", ["RG1_J2KI.dcm", "siim_cr_jpeg_baseline.dcm"])
def test_real_samples_stay_valid(name, tmp_path):
    """De-identifying a real file adds no dciodvfy error and keeps the compressed pixels as they are."""
    src = SAMPLES / name
    original = pydicom.dcmread(src)
    out = deidentify_file(src, tmp_path, salt=SALT)
    anon = pydicom.dcmread(out)
    assert anon.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert anon.PixelData == original.PixelData
    assert str(original.PatientName).encode() not in out.read_bytes()
    assert str(original.StudyInstanceUID).encode() not in out.read_bytes()
    assert set(dciodvfy_errors(out)) <= set(dciodvfy_errors(src))


def test_a_built_file_twice_gives_the_same_phi_free_names(tmp_path):
    one = phi_radiograph(tmp_path / "one.dcm")
    out = deidentify_file(one, tmp_path / "x", salt=SALT)
    again = deidentify_file(one, tmp_path / "x", salt=SALT)
    assert out == again and len(list((tmp_path / "x").iterdir())) == 1


def test_the_profile_table_names_real_attributes():
    """Every keyword of the action table is one pydicom knows (a typo would silently keep the value)."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    from thoracic.dicom import deid

    unknown = [k for k in (*deid._ACTIONS, *deid._KEEP_UID_KEYWORDS) if tag_for_keyword(k) is None]
    assert unknown == []
    assert all(dictionary_VR(tag_for_keyword(k)) == "UI" for k in deid._KEEP_UID_KEYWORDS)
    assert len(deid._ACTIONS) > 250
