"""The real server (uvicorn, a subprocess on a free loopback port): the viewer in headless
Chromium, and its logs at DEBUG scanned for patient data."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from helpers import ROOT, SAMPLES
from serve_helpers import (
    PHI,
    PHI_FILENAME,
    PHI_NEEDLES,
    chrome,
    dicom_bytes,
    need,
    server_command,
    stop,
    wait_until_healthy,
)

need("fastapi")
httpx = need("httpx")

LIVE_TOKEN = "live-token-5b1e9c"
SCREENSHOT = ROOT / "docs" / "clinic" / "viewer.png"


class LiveServer:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path) -> None:
        self.url = url.rstrip("/")
        self.proc = proc
        self.log = log

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, needle: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.logs()
            if needle in text:
                return text
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} never appeared in the server log:\n{self.logs()[-3000:]}")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """``thoracic serve --port 0`` at DEBUG in a subprocess; the URL is read from its first line."""
    yield from _serve(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def live_lite(tmp_path_factory, lite_classifier):
    """The same with the multi-label ``lite_classifier`` (``--classifier``) beside the shipped detector."""
    yield from _serve(tmp_path_factory.mktemp("serve-lite"), "--classifier", str(lite_classifier[1]))


def _serve(tmp: Path, *extra: str):
    token_file = tmp / "token"
    token_file.write_text(LIVE_TOKEN + "\n")
    log = tmp / "server.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("THORACIC_TOKEN", None)
    cmd = [*server_command(), "--port", "0", "--token-file", str(token_file),
           "--log-level", "debug", "--max-upload-mb", "4", "--threads", "1", "--queue", "4",
           "--upload-timeout", "1.5", *extra]
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=tmp)
    try:
        first = proc.stdout.readline()  # printed once the port is bound
        if not first.startswith("thoracic serve: http://"):
            raise AssertionError(f"unexpected first line {first!r}; log:\n{log.read_text()[-3000:]}")
        url = first.split()[2]
        wait_until_healthy(url, proc, log)
        yield LiveServer(url, proc, log)
    finally:
        stop(proc)


def test_the_server_logs_no_patient_data_at_debug(live):
    import pydicom

    auth = {"Authorization": f"Bearer {LIVE_TOKEN}"}
    phi_dicom = dicom_bytes(SAMPLES / "siim_cr_jpeg_baseline.dcm", **PHI)
    with httpx.Client(base_url=live.url, timeout=60) as c:
        r = c.post("/v1/analyze?outputs=sr,gsps,seg", files={"file": (PHI_FILENAME, phi_dicom)}, headers=auth)
        assert r.status_code == 200, r.text
        rid = r.json()["id"]
        assert c.get(f"/v1/results/{rid}/sr", headers=auth).status_code == 200
        lateral = dicom_bytes(SAMPLES / "siim_cr_jpeg_baseline.dcm", ViewPosition="LL", **PHI)
        assert c.post("/v1/analyze", files={"file": (PHI_FILENAME, lateral)}, headers=auth).status_code == 422
        r = c.post("/v1/analyze", content=phi_dicom[:5000], headers=auth)
        assert r.status_code == 400
        last = c.post("/v1/analyze", files={"file": (PHI_FILENAME, phi_dicom)}, headers=auth).json()["id"]
    text = live.wait_for_log(f"id={last}")
    assert "DEBUG" in text and "POST /v1/analyze 200" in text  # debug logging was on, requests were logged
    src = pydicom.dcmread(SAMPLES / "siim_cr_jpeg_baseline.dcm", stop_before_pixels=True)
    needles = [*PHI_NEEDLES, str(src.StudyInstanceUID), str(src.SOPInstanceUID), LIVE_TOKEN]
    assert [n for n in needles if n.lower() in text.lower()] == []


def test_a_stalled_upload_times_out_with_408_and_frees_its_slot(live):
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(live.url)
    head = (f"POST /v1/analyze HTTP/1.1\r\nHost: {u.hostname}\r\nAuthorization: Bearer {LIVE_TOKEN}\r\n"
            "Content-Type: application/dicom\r\nContent-Length: 100000\r\n\r\n").encode()
    with socket.create_connection((u.hostname, u.port), timeout=20) as sock:
        sock.sendall(head + b"\0" * 1000)  # then nothing more
        t0 = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert 1.0 < time.monotonic() - t0 < 15
    assert httpx.get(live.url + "/health").json()["in_flight"] == 0


def _chrome(require, tmp_path, monkeypatch):
    return chrome(require, tmp_path, monkeypatch)


def _analyze(driver, sample: str) -> None:
    """Give the token and a bundled sample to the open viewer, click analyze, and wait for it to finish."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.ID, "token").send_keys(LIVE_TOKEN)
    driver.find_element(By.ID, "file").send_keys(str(SAMPLES / sample))
    driver.find_element(By.ID, "analyze").click()
    status = driver.find_element(By.ID, "status")
    WebDriverWait(driver, 90).until(lambda d: status.get_attribute("data-state") in ("done", "error"))
    assert status.get_attribute("data-state") == "done", status.text


COLOURED = """
const c = document.getElementById('canvas');
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0;
for (let i = 0; i < d.length; i += 4) {
  if (Math.abs(d[i] - d[i + 1]) > 24 || Math.abs(d[i + 1] - d[i + 2]) > 24) n++;
}
return n;
"""


def test_the_viewer_draws_the_boxes_in_headless_chromium(live, require, tmp_path, monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _chrome(require, tmp_path, monkeypatch)
    try:
        driver.get(live.url + "/")
        assert driver.title == "thoracic viewer"
        canvas = driver.find_element(By.ID, "canvas")
        status = driver.find_element(By.ID, "status")

        def analyze(token: str, sample: str = "00000377_004.jpg") -> str:
            token_box = driver.find_element(By.ID, "token")
            token_box.clear()
            token_box.send_keys(token)
            driver.find_element(By.ID, "file").send_keys(str(SAMPLES / sample))
            driver.find_element(By.ID, "analyze").click()
            WebDriverWait(driver, 90).until(lambda d: status.get_attribute("data-state") in ("done", "error"))
            return status.get_attribute("data-state")

        # a wrong token shows the API's error, nothing is drawn
        assert analyze("not-the-token") == "error"
        assert "401" in status.text and canvas.get_attribute("data-boxes") == "0"

        assert analyze(LIVE_TOKEN) == "done", status.text
        boxes = int(canvas.get_attribute("data-boxes"))
        assert boxes >= 1
        rows = driver.find_elements(By.CSS_SELECTOR, "#findings tbody tr")
        assert len(rows) == boxes and "Cardiomegaly" in rows[0].text
        assert driver.find_element(By.ID, "p-abnormal").text.startswith("0.")
        with_boxes = driver.execute_script(COLOURED)
        assert with_boxes > 200  # box strokes, labels and the lung square

        def toggle(element_id: str) -> None:
            driver.find_element(By.ID, element_id).click()

        toggle("show-boxes")
        toggle("show-roi")
        assert canvas.get_attribute("data-boxes") == "0"
        assert driver.execute_script(COLOURED) == 0  # only the grey radiograph is left
        toggle("show-heatmap")
        assert canvas.get_attribute("data-heatmap") == "on"
        area = driver.execute_script("const c = document.getElementById('canvas'); return c.width * c.height;")
        heated = driver.execute_script(COLOURED)
        # the heatmap colours far more than the boxes do (about 10% of the canvas with the shipped detector)
        assert heated > max(5 * with_boxes, area // 20)
        toggle("show-heatmap")
        toggle("show-boxes")
        toggle("show-roi")
        assert canvas.get_attribute("data-heatmap") == "off" and driver.execute_script(COLOURED) == with_boxes

        # the viewer draws the API's findings (those above the detector's operating points) from a
        # minimum score of 0; raising it hides them
        assert driver.find_element(By.ID, "min-score").get_attribute("value") == "0"
        driver.execute_script(
            "const s = document.getElementById('min-score'); s.value = '1';"
            "s.dispatchEvent(new Event('input'));"
        )
        assert int(canvas.get_attribute("data-boxes")) == 0
        driver.execute_script(
            "const s = document.getElementById('min-score'); s.value = '0';"
            "s.dispatchEvent(new Event('input'));"
        )
        assert int(canvas.get_attribute("data-boxes")) == boxes
        toggle("show-lungs")
        shot = tmp_path / "viewer.png"
        assert driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000

        # a 2-class classifier: no per-finding list, no heatmap picker
        assert not driver.find_element(By.ID, "classifier-findings-box").is_displayed()
        assert not driver.find_element(By.ID, "heatmap-source-box").is_displayed()

        # a DICOM upload offers its SR, GSPS and SEG
        assert analyze(LIVE_TOKEN, "siim_cr_jpeg_baseline.dcm") == "done", status.text
        links = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a")]
        assert links == ["download SR", "download GSPS", "download SEG"]
        assert "dicom" in driver.find_element(By.ID, "size").text
    finally:
        driver.quit()
    if os.environ.get("THORACIC_UPDATE_SCREENSHOT") == "1" or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


# the analysis answer with boxes on every edge and corner added (in original-image pixels), so
# that the viewer's own drawing code is what places their labels
EDGE_FINDINGS = """
const realFetch = window.fetch;
window.fetch = async (url, opts) => {
  const r = await realFetch(url, opts);
  if (!String(url).endsWith('/v1/analyze') || !r.ok) return r;
  const res = await r.json();
  const W = res.width, H = res.height;
  const boxes = [[W - 40, 0, W, 40], [0, H - 30, 80, H], [W - 60, H - 60, W, H], [0, 0, W, H],
                 [0, H / 2 - 20, 40, H / 2 + 20], [W / 2 - 20, 0, W / 2 + 20, 90]];
  res.findings = boxes.map((box, i) => ({label: 'Interstitial lung disease', class_id: i, score: 0.9 - i / 100, box}))
    .concat(res.findings);
  return new Response(JSON.stringify(res), {status: 200, headers: {'Content-Type': 'application/json'}});
};
"""


def test_the_viewer_keeps_labels_inside_the_canvas_and_readable(live, require, tmp_path, monkeypatch):
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _chrome(require, tmp_path, monkeypatch)
    try:
        driver.get(live.url + "/")
        driver.execute_script(EDGE_FINDINGS)
        _analyze(driver, "00000377_004.jpg")
        canvas = driver.find_element(By.ID, "canvas")
        w, h, shown = driver.execute_script(
            "const c = document.getElementById('canvas'); return [c.width, c.height, c.clientWidth];")
        tags = json.loads(canvas.get_attribute("data-labels"))
        assert len(tags) == int(canvas.get_attribute("data-boxes")) >= 6
        for x, y, tw, th in tags:
            assert 0 <= x and x + tw <= w + 0.01 and 0 <= y and y + th <= h + 0.01, (x, y, tw, th, w, h)
            assert th * shown / w >= 14  # text and padding at least 14 screen pixels tall
        for i, a in enumerate(tags[:6]):  # the edge boxes' labels do not cover each other
            for b in tags[i + 1:6]:
                assert min(a[0] + a[2], b[0] + b[2]) <= max(a[0], b[0]) or min(a[1] + a[3], b[1] + b[3]) <= max(a[1], b[1])
        # shown smaller (a narrow window), the labels grow in canvas pixels to stay readable
        driver.set_window_size(900, 860)
        WebDriverWait(driver, 10).until(lambda d: d.execute_script(
            "return document.getElementById('canvas').clientWidth") < shown)
        shown2 = driver.execute_script("return document.getElementById('canvas').clientWidth")
        tags2 = json.loads(canvas.get_attribute("data-labels"))
        assert all(th * shown2 / w >= 14 for _, _, _, th in tags2)
        assert driver.save_screenshot(str(tmp_path / "edges.png"))
    finally:
        driver.quit()


def test_the_viewer_lists_the_classifier_findings_and_shows_the_picked_map(live_lite, require, tmp_path, monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = _chrome(require, tmp_path, monkeypatch)
    try:
        driver.get(live_lite.url + "/")
        _analyze(driver, "00000377_004.jpg")
        r = httpx.post(live_lite.url + "/v1/analyze?heatmap=false&lungs=false", timeout=60,
                       content=(SAMPLES / "00000377_004.jpg").read_bytes(),
                       headers={"Authorization": f"Bearer {LIVE_TOKEN}", "Content-Type": "image/jpeg"})
        findings = r.json()["classifier"]["findings"]  # the same film's, analyzed again
        # under P(abnormal): every finding of the classifier, most probable first
        assert driver.find_element(By.ID, "classifier-findings-box").is_displayed()
        items = driver.find_elements(By.CSS_SELECTOR, "#classifier-findings li")
        shown = [li.get_attribute("data-label") for li in items]
        assert sorted(shown) == sorted(findings)
        probs = [findings[k] for k in shown]
        assert probs == sorted(probs, reverse=True)
        assert all(f"{findings[k]:.3f}" in li.text for k, li in zip(shown, items, strict=True))
        # the picker: the detector's Eigen-CAM, abnormal, then the findings
        picker = Select(driver.find_element(By.ID, "heatmap-source"))
        assert driver.find_element(By.ID, "heatmap-source-box").is_displayed()
        assert [o.get_attribute("value") for o in picker.options] == ["", "abnormal", *shown]
        canvas = driver.find_element(By.ID, "canvas")
        for box in ("show-boxes", "show-roi"):
            driver.find_element(By.ID, box).click()  # only the radiograph and the heatmap are left
        assert driver.execute_script(COLOURED) == 0
        # a click on a finding shows its map
        label = shown[-1]
        items[-1].find_element(By.TAG_NAME, "button").click()
        WebDriverWait(driver, 30).until(lambda d: canvas.get_attribute("data-heatmap-source") == label)
        assert canvas.get_attribute("data-heatmap") == "on" and picker.first_selected_option.get_attribute("value") == label
        finding_map = driver.execute_script(PIXELS)
        assert driver.execute_script(COLOURED) > 100
        # the picker back to the detector: another picture
        picker.select_by_value("")
        WebDriverWait(driver, 30).until(lambda d: canvas.get_attribute("data-heatmap-source") == "detector")
        assert driver.execute_script(PIXELS) != finding_map
        picker.select_by_value(shown[0])
        WebDriverWait(driver, 30).until(lambda d: canvas.get_attribute("data-heatmap-source") == shown[0])
        assert driver.execute_script(COLOURED) > 100
    finally:
        driver.quit()


#: A digest of the canvas pixels (to tell two pictures apart).
PIXELS = """
const c = document.getElementById('canvas');
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let h = 0;
for (let i = 0; i < d.length; i += 97) h = (h * 31 + d[i]) % 1000000007;
return h;
"""

