"""The HTTP API in-process: every status path, downloads, models, OpenAPI, the 429 gate."""

from __future__ import annotations

import io
import threading
import time

import pytest
from helpers import FIXTURES, SAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_helpers import AUTH, TOKEN, dicom_bytes, need, png_pixels

need("fastapi")


def _error(r, status: int, kind: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert set(body) == {"type", "message"} and body["message"]
    if kind is not None:
        assert body["type"] == kind, body
    return body


# --- service routes ---------------------------------------------------------------------------
def test_health_needs_no_token_and_names_the_models(client):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["version"]
    assert sorted(m["role"] for m in body["models"]) == ["classifier", "detector", "lungs"]
    assert body["in_flight"] == 0 and body["capacity"] == 1 + 8


def test_v1_health_answers_like_health(client):
    a, b = client.get("/health"), client.get("/v1/health")  # no token for either
    assert b.status_code == a.status_code == 200
    assert b.json() == a.json()
    assert b.headers["content-type"] == a.headers["content-type"]
    assert "/v1/health" in client.get("/openapi.json").json()["paths"]


def test_models_lists_the_three_models_with_the_files_sha256_and_cards(client):
    from thoracic.models import model_card, model_path
    from thoracic.models.runtime import file_sha256

    _error(client.get("/v1/models"), 401, "unauthorized")
    r = client.get("/v1/models", headers=AUTH)
    assert r.status_code == 200
    models = {m["role"]: m for m in r.json()["models"]}
    assert sorted(models) == ["classifier", "detector", "lungs"]
    for role, m in models.items():
        assert m["sha256"] == file_sha256(model_path(m["name"])), role
        assert m["card"] == model_card(m["name"]) and m["card"].startswith("#")
    assert "Cardiomegaly" in models["detector"]["classes"]
    assert set(models["detector"]["classes"]) <= set(models["detector"]["outputs"])
    assert models["classifier"]["classes"] == ["normal", "abnormal"]
    assert models["lungs"]["classes"] == ["lung"]


def test_openapi_describes_the_routes_the_upload_and_the_bearer_scheme(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/health", "/v1/models", "/v1/analyze", "/v1/results/{rid}", "/v1/results/{rid}/image.png",
                 "/v1/results/{rid}/heatmap.png", "/v1/results/{rid}/lungs.png", "/v1/results/{rid}/sr",
                 "/v1/results/{rid}/gsps", "/v1/results/{rid}/seg"):
        assert path in paths, path
    post = paths["/v1/analyze"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert "application/dicom" in post["requestBody"]["content"]
    assert {"200", "401", "413", "415", "422", "429"} <= set(post["responses"])
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in spec["components"]["securitySchemes"].values())
    assert {p["name"] for p in post["parameters"]} >= {"min_score", "heatmap", "lungs", "outputs"}


def test_the_viewer_page_and_its_files_are_served_without_external_references(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "content-security-policy" in page.headers
    for name in ("viewer.js", "viewer.css"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and len(r.content) > 500
        assert "http://" not in r.text and "https://" not in r.text, name
    assert "http://" not in page.text and "https://" not in page.text


# --- analyze: 200 ------------------------------------------------------------------------------
def test_analyze_a_dicom_upload(client, cr_dicom):
    from thoracic import __version__

    # min_score low: this film has no finding above the shipped detector's operating points
    r = client.post("/v1/analyze?min_score=0.05", files={"file": ("x.dcm", cr_dicom, "application/dicom")}, headers=AUTH)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["dicom"] is True and a["format"] == "dicom"
    assert a["operating_points"]["source"] == "min_score"
    assert a["image_id"] == a["id"] and len(a["id"]) >= 20  # random, not derived from the file
    assert a["thoracic_version"] == __version__
    assert sorted(m["role"] for m in a["models"]) == ["classifier", "detector", "lungs"]
    assert all(len(m["sha256"]) == 64 for m in a["models"])
    assert a["findings"] and 0.0 <= a["p_abnormal"] <= 1.0
    for f in a["findings"]:
        x0, y0, x1, y1 = f["box"]
        assert 0 <= x0 < x1 <= a["width"] and 0 <= y0 < y1 <= a["height"]
    assert set(a["links"]) >= {"image", "heatmap", "lungs", "sr", "gsps", "seg"}
    # the viewer's images: all at the display size, the overlays transparent
    w, h = a["display"]["width"], a["display"]["height"]
    assert max(w, h) <= 1024 and abs(w / h - a["width"] / a["height"]) < 0.01
    image = png_pixels(client.get(a["links"]["image"], headers=AUTH).content)
    heat = png_pixels(client.get(a["links"]["heatmap"], headers=AUTH).content)
    lungs = png_pixels(client.get(a["links"]["lungs"], headers=AUTH).content)
    assert image.shape == (h, w) and heat.shape == lungs.shape == (h, w, 4)
    assert image.std() > 10 and 0 < (lungs[..., 3] > 0).mean() < 0.8
    assert client.get(f"/v1/results/{a['id']}", headers=AUTH).json() == a
    _error(client.get(a["links"]["image"]), 401)  # results are as private as the upload


def test_analyze_png_and_jpeg_as_raw_bodies(client, chest_png, chest_jpeg):
    results = []
    for body, ctype in ((chest_png, "image/png"), (chest_jpeg, "image/jpeg")):
        r = client.post("/v1/analyze?min_score=0.05", content=body, headers={**AUTH, "Content-Type": ctype})
        assert r.status_code == 200, r.text
        results.append(r.json())
    png, jpeg = results
    assert png["format"] == "png" and jpeg["format"] == "jpeg" and not png["dicom"]
    assert "sr" not in png["links"]
    assert png["findings"] and all(f["score"] >= 0.05 for f in png["findings"])
    assert [f["label"] for f in png["findings"]][0] == "Cardiomegaly"  # this film's finding
    assert png["id"] != jpeg["id"]


def test_the_heatmap_and_lungs_can_be_left_out(client, chest_png):
    r = client.post("/v1/analyze?heatmap=false&lungs=false", content=chest_png,
                    headers={**AUTH, "Content-Type": "image/png"})
    a = r.json()
    assert r.status_code == 200 and a["heatmap"] is False and a["lung_roi"] is None
    assert set(a["links"]) == {"self", "image"}
    _error(client.get(f"/v1/results/{a['id']}/heatmap.png", headers=AUTH), 404, "not_available")


# --- DICOM results -------------------------------------------------------------------------------
def test_sr_gsps_seg_of_a_dicom_upload_read_back_with_pydicom(client, cr_dicom, require):
    require("highdicom")
    require("thoracic.dicom")
    import pydicom

    source = pydicom.dcmread(io.BytesIO(cr_dicom), stop_before_pixels=True)
    r = client.post("/v1/analyze?outputs=sr,gsps,seg&dicom_min_score=0.01",
                    files={"file": ("x.dcm", cr_dicom)}, headers=AUTH)
    assert r.status_code == 200, r.text
    a = r.json()
    classes = {
        "sr": "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
        "gsps": "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
        "seg": "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    }
    for kind, sop_class in classes.items():
        d = client.get(a["links"][kind], headers=AUTH)
        assert d.status_code == 200, d.text
        assert d.headers["content-type"] == "application/dicom"
        ds = pydicom.dcmread(io.BytesIO(d.content))
        assert ds.SOPClassUID == sop_class, kind
        assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientID == source.PatientID
        assert ds.SOPInstanceUID != source.SOPInstanceUID
    seg = pydicom.dcmread(io.BytesIO(client.get(a["links"]["seg"], headers=AUTH).content))
    assert (seg.Rows, seg.Columns) == (a["height"], a["width"])


def test_dicom_results_are_made_on_first_download_too(client, cr_dicom, require):
    require("highdicom")
    require("thoracic.dicom")
    a = client.post("/v1/analyze", content=cr_dicom, headers={**AUTH, "Content-Type": "application/dicom"}).json()
    entry = client.app.state.service.store.get(a["id"])
    # kept for the DICOM results without the image and heatmap: about the lung mask's byte a pixel
    assert entry.analysis is not None and entry.nbytes() < 2 * a["width"] * a["height"] + 2_000_000
    first = client.get(a["links"]["gsps"], headers=AUTH)
    again = client.get(a["links"]["gsps"], headers=AUTH)
    assert first.status_code == again.status_code == 200 and first.content == again.content
    assert entry.analysis is None and {"sr", "gsps", "seg"} <= set(entry.files)  # made once, all three


def test_asking_dicom_results_of_a_png_is_422_with_an_explanation(client, chest_png):
    body = _error(client.post("/v1/analyze?outputs=sr", files={"file": ("a.png", chest_png)}, headers=AUTH),
                  422, "not_dicom")
    assert "DICOM" in body["message"] and "png" in body["message"]
    a = client.post("/v1/analyze", files={"file": ("a.png", chest_png)}, headers=AUTH).json()
    for kind in ("sr", "gsps", "seg"):
        _error(client.get(f"/v1/results/{a['id']}/{kind}", headers=AUTH), 422, "not_dicom")


def test_unknown_outputs_and_results(client, cr_dicom):
    _error(client.post("/v1/analyze?outputs=pdf", content=cr_dicom, headers=AUTH), 400, "bad_request")
    _error(client.get("/v1/results/nope", headers=AUTH), 404, "unknown_result")
    _error(client.get("/v1/results/nope/sr", headers=AUTH), 404, "unknown_result")
    _error(client.get("/no/such/route"), 404, "not_found")


# --- 4xx -------------------------------------------------------------------------------------------
def test_missing_or_wrong_token_is_401(client, cr_dicom):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"Bearer {TOKEN[:-1]}"}):
        r = client.post("/v1/analyze", content=cr_dicom, headers=headers)
        _error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in r.text


def test_tokens_are_compared_in_constant_time(client, monkeypatch):
    import hmac

    from thoracic.serve import service as service_module

    calls = []
    original = hmac.compare_digest

    def spy(a, b):
        calls.append((type(a), len(a), len(b)))
        return original(a, b)

    monkeypatch.setattr(service_module.hmac, "compare_digest", spy)
    assert client.get("/v1/models", headers={"Authorization": "Bearer short"}).status_code == 401
    assert client.get("/v1/models", headers=AUTH).status_code == 200
    # both compared as equal-length digests, whatever the length of the token sent
    assert calls == [(bytes, 32, 32), (bytes, 32, 32)]


def test_uploads_beyond_the_limit_are_413(client):
    big = (FIXTURES / "nih_dx_implicit_le.dcm").read_bytes()  # 1.0 MiB + a bit, the limit is 1 MiB
    assert len(big) > 1 << 20
    _error(client.post("/v1/analyze", content=big, headers={**AUTH, "Content-Type": "application/dicom"}),
           413, "too_large")
    _error(client.post("/v1/analyze", files={"file": ("a.dcm", big)}, headers=AUTH), 413, "too_large")

    def chunks():  # no Content-Length: the stream itself is counted
        for _ in range(40):
            yield b"\0" * 65536

    _error(client.post("/v1/analyze", content=chunks(), headers=AUTH), 413, "too_large")


def test_unreadable_uploads_are_400_or_415(client, cr_dicom):
    cases = [
        (b"", 400, "empty_file"),
        (b"hello, this is not an image" * 10, 415, "unsupported_format"),
        (cr_dicom[: len(cr_dicom) // 2], 400, "corrupt_file"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, 400, None),
    ]
    for body, status, kind in cases:
        _error(client.post("/v1/analyze", content=body, headers={**AUTH, "Content-Type": "application/octet-stream"}),
               status, kind)
    _error(client.post("/v1/analyze", json={"image": "x"}, headers=AUTH), 415, "unsupported_media_type")
    _error(client.post("/v1/analyze", files={"other": ("", b"")}, data={"a": "b"}, headers=AUTH), 400)


def test_images_that_are_not_frontal_chest_films_are_422(client):
    src = SAMPLES / "siim_cr_jpeg_baseline.dcm"
    for changes, kind in (({"ViewPosition": "LL"}, "not_chest_radiograph"),
                          ({"Modality": "CT"}, "not_chest_radiograph"),
                          ({"BodyPartExamined": "KNEE"}, "not_chest_radiograph")):
        body = _error(client.post("/v1/analyze", content=dicom_bytes(src, **changes), headers=AUTH), 422, kind)
        assert "allow_non_chest" in body["message"]
    body = _error(client.post("/v1/analyze", content=dicom_bytes(src, NumberOfFrames="2"), headers=AUTH),
                  422, "multi_frame")
    assert "2 frames" in body["message"]


def test_the_service_can_allow_non_chest_images(make_client):
    client = make_client(allow_non_chest=True)
    r = client.post("/v1/analyze", content=dicom_bytes(SAMPLES / "siim_cr_jpeg_baseline.dcm", ViewPosition="LL"),
                    headers=AUTH)
    assert r.status_code == 200 and r.json()["flags"] == ["view:LL"]


def _photo_png() -> bytes:
    from PIL import Image

    skdata = pytest.importorskip("skimage.data")
    buf = io.BytesIO()
    Image.fromarray(skdata.coffee()).save(buf, format="PNG")
    return buf.getvalue()


def test_a_photo_is_422_with_the_reason_and_flagged_when_allowed(client, make_client):
    body = _error(client.post("/v1/analyze", content=_photo_png(), headers=AUTH), 422, "not_chest_radiograph")
    assert "coloured" in body["message"] and "allow_non_chest" in body["message"]
    r = make_client(allow_non_chest=True).post("/v1/analyze", content=_photo_png(), headers=AUTH)
    assert r.status_code == 200 and any(f.startswith("content:colour") for f in r.json()["flags"])


def test_bad_parameters_are_typed_422(client, cr_dicom):
    body = _error(client.post("/v1/analyze?min_score=2", content=cr_dicom, headers=AUTH), 422, "invalid_parameter")
    assert "min_score" in body["message"]


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=st.sampled_from([b"", b"\0" * 128 + b"DICM", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\0"]),
       tail=st.binary(max_size=600))
def test_no_byte_string_makes_a_5xx(client, head, tail):
    r = client.post("/v1/analyze", content=head + tail, headers=AUTH)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert set(r.json()["error"]) == {"type", "message"}


# --- the 429 gate -----------------------------------------------------------------------------------
class HeldAnalyzer:
    """The real analyzer behind a gate the test opens: requests pile up deterministically."""

    def __init__(self, real):
        self.real = real
        self.models = real.models
        self.predictor = real.predictor
        self.segmenter = real.segmenter
        self.release = threading.Event()

    def analyze(self, *args, **kwargs):
        if not self.release.wait(30):
            raise TimeoutError("the test never released the analyzer")
        return self.real.analyze(*args, **kwargs)


def test_a_full_queue_answers_429_with_retry_after_at_once(make_client, analyzer, chest_png):
    held = HeldAnalyzer(analyzer)
    client = make_client(held, concurrency=1, queue=1)
    svc = client.app.state.service
    responses = []

    def post():
        responses.append(client.post("/v1/analyze", content=chest_png, headers=AUTH))

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while svc.gate.in_flight < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert svc.gate.in_flight == 2  # one running, one waiting: the capacity

    t0 = time.monotonic()
    r = client.post("/v1/analyze", content=chest_png, headers=AUTH)
    assert time.monotonic() - t0 < 5  # refused at once, not queued
    _error(r, 429, "busy")
    assert int(r.headers["retry-after"]) >= 1
    assert client.get("/health").json()["in_flight"] == 2  # health still answers when busy

    held.release.set()
    for t in threads:
        t.join(30)
    assert sorted(x.status_code for x in responses) == [200, 200]
    assert svc.gate.in_flight == 0
    assert client.post("/v1/analyze", content=chest_png, headers=AUTH).status_code == 200


# --- the clinical operating points ----------------------------------------------------------------
def test_the_default_findings_are_those_above_the_detectors_operating_points(make_client, chest_png, detector_onnx,
                                                                          tmp_path):
    from helpers import model_with_meta

    from thoracic.detect.clinical import DEFAULT_MIN_SCORE, MERGE_IOU
    from thoracic.inference.analyzer import Analyzer

    plain = Analyzer.load([model_with_meta(detector_onnx, tmp_path / "plain.onnx", extra={})], lungs=False, threads=1)
    raw = plain.analyze(chest_png).prediction.detections
    assert len(raw) >= 2
    points = {raw.labels[0]: round(float(raw.scores[0]) - 1e-4, 6)}  # the best box's finding only
    with_points = Analyzer.load([model_with_meta(detector_onnx, tmp_path / "points.onnx",
                                                 extra={"operating_points": points})], lungs=False, threads=1)

    def post(client, query=""):
        r = client.post(f"/v1/analyze{query}", content=chest_png, headers={**AUTH, "Content-Type": "image/png"})
        assert r.status_code == 200, r.text
        return r.json()

    a = post(make_client(with_points))
    assert a["operating_points"] == {"source": "model", "merge_iou": MERGE_IOU, "scores": points}
    assert [f["label"] for f in a["findings"]] == [raw.labels[0]] and len(raw) > 1
    assert a["findings"][0]["score"] == pytest.approx(float(raw.scores[0]), abs=1e-6)
    # min_score: every finding from that score instead, merged all the same
    low = post(make_client(with_points), "?min_score=0.01")
    assert low["operating_points"] == {"source": "min_score", "merge_iou": MERGE_IOU, "min_score": 0.01}
    assert len(low["findings"]) > 1
    # a model without operating points: the one default
    d = post(make_client(plain))
    assert d["operating_points"] == {"source": "default", "merge_iou": MERGE_IOU, "min_score": DEFAULT_MIN_SCORE}
    assert all(f["score"] >= DEFAULT_MIN_SCORE - 1e-6 for f in d["findings"])
    expected = [(lab, round(float(s), 6)) for lab, s in zip(raw.labels, raw.scores.tolist(), strict=True)
                if s >= DEFAULT_MIN_SCORE - 1e-6]
    assert len(d["findings"]) <= len(expected)  # merged: never more than the boxes above the default


# --- a multi-label classifier: per-finding probabilities and heatmaps ---------------------------------
def test_a_multilabel_classifier_answers_each_finding_and_serves_its_maps(make_client, lite_analyzer, chest_png):
    import numpy as np

    client = make_client(lite_analyzer)
    r = client.post("/v1/analyze", content=chest_png, headers={**AUTH, "Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    a = r.json()
    labels = list(lite_analyzer.predictor.classifier.labels)
    c = a["classifier"]
    assert list(c["findings"]) == labels[1:] and all(0.0 <= p <= 1.0 for p in c["findings"].values())
    assert set(c["thresholds"]) == set(labels[1:]) and c["maps"] == labels
    assert a["links"]["heatmap_finding"] == f"/v1/results/{a['id']}/heatmap.png?finding={{label}}"
    w, h = a["display"]["width"], a["display"]["height"]
    eigen = png_pixels(client.get(a["links"]["heatmap"], headers=AUTH).content)
    maps = {}
    for label in ("Cardiomegaly", "pleural_effusion", "abnormal"):  # a name, a slug, abnormal
        r = client.get(a["links"]["heatmap"], params={"finding": label}, headers=AUTH)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
        maps[label] = png_pixels(r.content)
        assert maps[label].shape == (h, w, 4) and maps[label][..., 3].std() > 1  # a transparent overlay that shows
    assert np.abs(maps["Cardiomegaly"].astype(int) - maps["pleural_effusion"].astype(int)).mean() > 1
    assert np.abs(maps["Cardiomegaly"].astype(int) - eigen.astype(int)).mean() > 1
    # the same again: rendered once and kept
    again = client.get(a["links"]["heatmap_finding"].replace("{label}", "Cardiomegaly"), headers=AUTH)
    np.testing.assert_array_equal(png_pixels(again.content), maps["Cardiomegaly"])
    body = _error(client.get(a["links"]["heatmap"], params={"finding": "Hernia"}, headers=AUTH), 404, "not_available")
    assert "Cardiomegaly" in body["message"]
    assert client.get(f"/v1/results/{a['id']}", headers=AUTH).json() == a
    # no heatmap asked for: the probabilities without maps
    r = client.post("/v1/analyze?heatmap=false", content=chest_png, headers={**AUTH, "Content-Type": "image/png"})
    b = r.json()
    assert b["classifier"]["maps"] == [] and "heatmap_finding" not in b["links"]
    assert b["classifier"]["findings"] == c["findings"]
    _error(client.get(f"/v1/results/{b['id']}/heatmap.png", params={"finding": "Cardiomegaly"}, headers=AUTH), 404,
           "not_available")


def test_a_two_class_classifier_answers_as_before(client, chest_png):
    r = client.post("/v1/analyze", content=chest_png, headers={**AUTH, "Content-Type": "image/png"})
    a = r.json()
    assert r.status_code == 200 and "classifier" not in a and set(a["links"]) == {"self", "image", "heatmap", "lungs"}
    _error(client.get(a["links"]["heatmap"], params={"finding": "Cardiomegaly"}, headers=AUTH), 404, "not_available")
    assert client.get(a["links"]["heatmap"], headers=AUTH).status_code == 200


def test_a_service_started_with_a_preset_analyzes_with_its_models(detector_onnx, tmp_path):
    need("fastapi")
    from serve_helpers import starlette_test_client

    from thoracic.inference.preset import Preset, members_of, write_preset
    from thoracic.serve import ServeConfig, create_app

    preset = write_preset(tmp_path / "e.json", Preset("e", members_of([detector_onnx, detector_onnx]), tta=True,
                                                      classifier=None))
    app = create_app(ServeConfig(token=TOKEN, preset=str(preset), threads=1))  # the models load when the app starts
    with starlette_test_client()(app) as client:
        roles = [m["role"] for m in client.get("/v1/models", headers=AUTH).json()["models"]]
        assert roles == ["detector", "detector", "lungs"]
        r = client.post("/v1/analyze", headers=AUTH, files={"file": ("c.jpg", (SAMPLES / "00000377_004.jpg").read_bytes())})
        assert r.status_code == 200, r.text
        assert [m["role"] for m in r.json()["models"]] == ["detector", "detector", "lungs"]
