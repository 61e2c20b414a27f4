"""Sending to a real Orthanc: C-STORE and STOW-RS, repeated sends, and the errors."""

from __future__ import annotations

import pydicom
import pytest
from node_helpers import NODE_AE, free_port, make_copy

from thoracic.node.config import CStoreDestination, StowRsDestination
from thoracic.node.send import SendError, send_files


@pytest.fixture(scope="module")
def pacs(orthanc_factory):
    return orthanc_factory("sendpacs")


@pytest.fixture
def files(tmp_path, radiographs):
    return [make_copy(src, tmp_path / f"{i}.dcm") for i, src in enumerate(radiographs[:3])]


def _uids(paths) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}


def _stored(pacs) -> set[str]:
    return {t["SOPInstanceUID"] for t in pacs.instances()}


def test_cstore_sends_every_file_and_a_resend_stores_nothing_new(pacs, files):
    pacs.clear()
    dest = CStoreDestination(pacs.aet, "127.0.0.1", pacs.dicom_port)
    send_files(dest, files, calling_ae=NODE_AE)
    assert _stored(pacs) == _uids(files)
    send_files(dest, files, calling_ae=NODE_AE)  # after a crash between sending and marking done
    assert len(pacs.http.get("/instances").json()) == len(files)


def test_stowrs_sends_every_file_and_a_resend_stores_nothing_new(pacs, files):
    pacs.clear()
    dest = StowRsDestination(pacs.dicomweb)
    send_files(dest, files, calling_ae=NODE_AE)
    assert _stored(pacs) == _uids(files)
    send_files(dest, files, calling_ae=NODE_AE)
    assert len(pacs.http.get("/instances").json()) == len(files)


# pynetdicom 3.0.4 leaves the socket of a refused TCP connection open (a ResourceWarning at exit)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_send_errors(pacs, files):
    closed = free_port()
    with pytest.raises(SendError, match="association with cstore:PACS@127.0.0.1"):
        send_files(CStoreDestination("PACS", "127.0.0.1", closed), files, calling_ae=NODE_AE)
    with pytest.raises(SendError, match="rejected"):  # Orthanc checks the called AE title
        send_files(CStoreDestination("NOT-ORTHANC", "127.0.0.1", pacs.dicom_port), files, calling_ae=NODE_AE)
    with pytest.raises(SendError, match="HTTP 404"):
        send_files(StowRsDestination(pacs.url + "/no-such-root"), files, calling_ae=NODE_AE)
    with pytest.raises(SendError, match="cannot be reached"):
        send_files(StowRsDestination(f"http://127.0.0.1:{closed}/dicom-web"), files, calling_ae=NODE_AE)
    assert isinstance(SendError("x"), OSError)


class _StowServer:
    """A minimal STOW-RS endpoint answering a fixed status and JSON body (what some PACS answer
    to instances they already hold, which Orthanc does not do)."""

    def __init__(self, status: int, body: dict):
        import http.server
        import json
        import threading

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(self.path)
                outer.headers.append(dict(self.headers))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.requests: list[str] = []
        self.headers: list[dict] = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dicom-web"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _failed(*reasons):
    return {"00081198": {"vr": "SQ", "Value": [
        {"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.88.34"]},
         "00081155": {"vr": "UI", "Value": [f"2.25.{i}"]},
         "00081197": {"vr": "US", "Value": [r]}} for i, r in enumerate(reasons)]}}


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (409, _failed(0x0111, 0x0111), None),  # all duplicates: stored already
        (202, _failed(0x0111), None),
        (200, {}, None),
        (409, _failed(0x0111, 0xA700), r"refused 1 of 3 result\(s\) \(reasons 0xA700\)"),
        (409, {}, "409 Conflict without saying"),
        (400, _failed(0x0111), "HTTP 400"),
    ],
)
def test_stowrs_answers(files, status, body, error):
    server = _StowServer(status, body)
    try:
        dest = StowRsDestination(server.url)
        if error is None:
            send_files(dest, files, calling_ae=NODE_AE)
        else:
            with pytest.raises(SendError, match=error):
                send_files(dest, files, calling_ae=NODE_AE)
        assert server.requests == ["/dicom-web/studies"]
    finally:
        server.close()


def test_stowrs_sends_a_multipart_body_with_credentials(files):
    server = _StowServer(200, {})
    try:
        send_files(StowRsDestination(server.url, token="t0k"), files, calling_ae=NODE_AE)
        send_files(StowRsDestination(server.url, username="ai", password="pw"), files, calling_ae=NODE_AE)
    finally:
        server.close()
    bearer, basic = server.headers
    assert bearer["Authorization"] == "Bearer t0k"
    assert basic["Authorization"] == "Basic YWk6cHc="  # ai:pw
    assert bearer["Content-Type"].startswith('multipart/related; type="application/dicom"; boundary=')
    assert int(bearer["Content-Length"]) > sum(f.stat().st_size for f in files)
