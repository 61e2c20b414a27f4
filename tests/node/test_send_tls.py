"""Results over TLS: C-STORE to an Orthanc that speaks DICOM TLS only (mutual TLS), STOW-RS to
an Orthanc that speaks HTTPS only, and the whole node (storescu +tls -> node -> Orthanc) over TLS."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import require_tool
from node_helpers import MODALITY_AE, NODE_AE, NodeProcess, TlsProxy, make_copy, queue_counts, wait_until

from thoracic._tls import server_context
from thoracic.errors import ConfigError
from thoracic.node.config import CStoreDestination, StowRsDestination
from thoracic.node.send import SendError, send_files


@pytest.fixture(scope="module")
def tls_pacs(orthanc_factory, pki):
    """Orthanc with DICOM TLS only (client certificates of the test CA required); its DICOMweb
    over HTTPS at ``.https_dicomweb`` through a TLS proxy (see ``TlsProxy`` for why)."""
    pacs = orthanc_factory("tlspacs", extra={
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(pki.server_cert),
        "DicomTlsPrivateKey": str(pki.server_key),
        "DicomTlsTrustedCertificates": str(pki.ca),
        "DicomTlsRemoteCertificateRequired": True,
    })
    proxy = TlsProxy(server_context(pki.server_cert, pki.server_key), pacs.http_port)
    pacs.https_dicomweb = f"https://localhost:{proxy.port}/dicom-web"
    yield pacs
    proxy.close()


@pytest.fixture
def files(tmp_path, radiographs):
    return [make_copy(radiographs[0], tmp_path / "r" / f"{i}.dcm") for i in range(2)]


def _dest(pacs, pki, **tls):
    return CStoreDestination(pacs.aet, "localhost", pacs.dicom_port, **tls)


def test_cstore_over_mutual_tls_stores_every_file(tls_pacs, pki, files):
    before = len(tls_pacs.http.get("/instances").json())
    send_files(_dest(tls_pacs, pki, tls=True, tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key),
               files, calling_ae=NODE_AE)
    assert len(tls_pacs.http.get("/instances").json()) == before + 2


@pytest.mark.parametrize(
    ("tls", "case"),
    [
        ({}, "plaintext to a TLS-only PACS"),
        ({"tls": True, "tls_ca": "ca"}, "no client certificate"),
        ({"tls": True, "tls_ca": "ca", "tls_cert": "foreign_cert", "tls_key": "foreign_key"}, "a foreign client certificate"),
        ({"tls": True, "tls_ca": "foreign_ca", "tls_cert": "client_cert", "tls_key": "client_key"},
         "the PACS certificate not signed by the CA we trust"),
        ({"tls": True, "tls_cert": "client_cert", "tls_key": "client_key"}, "the system store does not know the test CA"),
    ],
)
def test_cstore_over_tls_is_refused_without_the_right_certificates(tls_pacs, pki, files, tls, case):
    before = len(tls_pacs.http.get("/instances").json())
    settings = {k: (getattr(pki, v) if isinstance(v, str) else v) for k, v in tls.items()}
    with pytest.raises(SendError, match="failed"):
        send_files(_dest(tls_pacs, pki, **settings), files, calling_ae=NODE_AE)
    assert len(tls_pacs.http.get("/instances").json()) == before


def test_the_pacs_host_name_must_be_on_its_certificate(tls_pacs, pki, files):
    dest = CStoreDestination(tls_pacs.aet, "127.0.0.2", tls_pacs.dicom_port, tls=True, tls_ca=pki.ca,
                             tls_cert=pki.client_cert, tls_key=pki.client_key)  # the certificate names 127.0.0.1
    with pytest.raises(SendError, match="names the host"):
        send_files(dest, files, calling_ae=NODE_AE)


def test_stowrs_over_https_is_verified(tls_pacs, pki, files):
    before = len(tls_pacs.http.get("/instances").json())
    send_files(StowRsDestination(tls_pacs.https_dicomweb, ca=pki.ca), files, calling_ae=NODE_AE)
    assert len(tls_pacs.http.get("/instances").json()) == before + 2
    for dest in (StowRsDestination(tls_pacs.https_dicomweb, ca=pki.foreign_ca), StowRsDestination(tls_pacs.https_dicomweb)):
        with pytest.raises(SendError, match="certificate not verified: .*give its CA with --stowrs-ca"):
            send_files(dest, files, calling_ae=NODE_AE)


def test_destination_tls_settings_are_checked(pki):
    with pytest.raises(ConfigError, match="need --dest-tls"):
        CStoreDestination("PACS", "h", 104, tls_ca=pki.ca)
    with pytest.raises(ConfigError, match="client certificate needs its private key"):
        CStoreDestination("PACS", "h", 104, tls=True, tls_cert=pki.client_cert)
    with pytest.raises(ConfigError, match=f"^{pki.root / 'nope.pem'}: cannot read the TLS CA file"):
        CStoreDestination("PACS", "h", 104, tls=True, tls_ca=pki.root / "nope.pem")
    with pytest.raises(ConfigError, match="for an https:// URL"):
        StowRsDestination("http://pacs/dw", ca=pki.ca)
    assert StowRsDestination("http://pacs/dw", verify=False).ssl_context() is False


def test_the_node_over_tls_end_to_end(tmp_path, tls_pacs, pki, radiographs):
    """storescu +tls -> the node (mutual TLS) -> results by C-STORE over TLS and STOW-RS over HTTPS."""
    storescu = require_tool("storescu", "dcmtk")
    image = make_copy(radiographs[1], tmp_path / "send" / "0.dcm")  # implicit VR: storescu's default proposal
    args = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key), "--tls-ca", str(pki.ca),
            "--dest-ae", tls_pacs.aet, "--dest-host", "localhost", "--dest-port", str(tls_pacs.dicom_port),
            "--dest-tls", "--dest-tls-ca", str(pki.ca), "--dest-tls-cert", str(pki.client_cert),
            "--dest-tls-key", str(pki.client_key), "--stowrs", tls_pacs.https_dicomweb, "--stowrs-ca", str(pki.ca),
            "--backoff", "0.5"]
    spool = tmp_path / "spool"
    node = NodeProcess(spool, tmp_path / "node.log", args).start()
    try:
        tls = ["+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca)]
        sent = subprocess.run([storescu, "-v", *tls, "-aet", MODALITY_AE, "-aec", NODE_AE, "127.0.0.1",
                               str(node.port), str(image)], capture_output=True, text=True, timeout=60, check=False)
        assert "Received Store Response (Success)" in sent.stderr, sent.stderr
        plain = subprocess.run([storescu, "-aet", MODALITY_AE, "-aec", NODE_AE, "127.0.0.1", str(node.port),
                                str(image)], capture_output=True, text=True, timeout=60, check=False)
        assert plain.returncode != 0
        wait_until(lambda: queue_counts(spool).get("done", 0) == 1, 180, "results delivered over TLS")
    finally:
        assert node.stop() == 0
    log = node.log_text()
    assert "over TLS, client certificates required (mutual TLS)" in log
    assert f"results to cstore:{tls_pacs.aet}@localhost:{tls_pacs.dicom_port} over TLS" in log
    assert "not a TLS handshake" in log
    import pydicom

    study = str(pydicom.dcmread(image, stop_before_pixels=True).StudyInstanceUID)
    found = tls_pacs.http.post("/tools/find", json={"Level": "Instance", "Query": {"StudyInstanceUID": study},
                                                    "Expand": True}).json()
    modalities = sorted(tls_pacs.http.get(f"/instances/{i['ID']}/simplified-tags").json()["Modality"] for i in found)
    # SR + GSPS + SEG, each sent twice (C-STORE and STOW-RS) to the same PACS, stored once
    assert modalities == ["PR", "SEG", "SR"]
    assert Path(spool / "queue.sqlite3").exists()
