"""The C-STORE SCP over TLS (in-process, no models): dcmtk's echoscu/storescu with ``+tls`` and
pynetdicom clients, with certificates of a test CA made by openssl (the ``pki`` fixture)."""

from __future__ import annotations

import logging
import socket
import subprocess
import time

import pytest
from helpers import require_tool
from node_helpers import MODALITY_AE, NODE_AE, make_copy

from thoracic import _tls
from thoracic.errors import ConfigError
from thoracic.node.config import NodeConfig, StowRsDestination
from thoracic.node.send import _close_socket



@pytest.fixture
def tls_scp(scp, pki):
    """Start an SCP over TLS (queue only): ``tls_scp(mutual=True) -> (config, queue)``."""

    def start(mutual: bool = True):
        return scp(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_ca=pki.ca if mutual else None)

    return start


def _echoscu(port: int, *tls: str) -> subprocess.CompletedProcess:
    exe = require_tool("echoscu", "dcmtk")
    return subprocess.run([exe, *tls, "-aet", MODALITY_AE, "-aec", NODE_AE, "127.0.0.1", str(port)],
                          capture_output=True, text=True, timeout=30, check=False)


def test_dcmtk_is_built_with_openssl():
    exe = require_tool("echoscu", "dcmtk")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    assert "OpenSSL" in version  # otherwise +tls is not an option and the tests below would say so


def test_dcmtk_with_a_good_certificate_is_accepted_and_stores(tls_scp, pki, tmp_path, radiographs):
    config, queue = tls_scp()
    tls = ["+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca)]
    ok = _echoscu(config.port, *tls)
    assert ok.returncode == 0, ok.stderr
    image = make_copy(radiographs[1], tmp_path / "send" / "0.dcm")  # implicit VR: storescu's default proposal
    store = subprocess.run([require_tool("storescu", "dcmtk"), "-v", *tls, "-aet", MODALITY_AE, "-aec", NODE_AE,
                            "127.0.0.1", str(config.port), str(image)], capture_output=True, text=True, timeout=60, check=False)
    assert store.returncode == 0 and "Received Store Response (Success)" in store.stderr, store.stderr
    assert queue.counts()["received"] == 1


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("plaintext", "not a TLS handshake"),
        ("anonymous TLS (no certificate)", "mutual TLS needs a client certificate"),
        ("a certificate of another CA", "certificate verify failed"),
        ("our CA not trusted by the client", "unknown ca"),
    ],
)
def test_dcmtk_without_a_good_certificate_is_refused(tls_scp, pki, caplog, case, why):
    config, queue = tls_scp()
    args = {
        "plaintext": [],
        "anonymous TLS (no certificate)": ["+tla", "+cf", str(pki.ca)],
        "a certificate of another CA": ["+tls", str(pki.foreign_key), str(pki.foreign_cert), "+cf", str(pki.ca)],
        "our CA not trusted by the client": ["+tls", str(pki.client_key), str(pki.client_cert),
                                             "+cf", str(pki.foreign_ca)],
    }[case]
    with caplog.at_level(logging.WARNING, logger="thoracic.tls"):
        refused = _echoscu(config.port, *args)
        deadline = time.monotonic() + 5
        while why not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    assert refused.returncode != 0, refused.stderr
    assert "Association Request Failed" in refused.stderr
    assert "TLS handshake from 127.0.0.1:" in caplog.text and why in caplog.text
    assert sum(queue.counts().values()) == 0


def _associate(port: int, ctx) -> bool:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=MODALITY_AE)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = ae.connection_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE, tls_args=(ctx, "localhost") if ctx else None)
    if not assoc.is_established:
        _close_socket(assoc)
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status) and status.Status == 0x0000


def test_pynetdicom_clients(tls_scp, pki):
    config, _ = tls_scp()
    assert _associate(config.port, _tls.client_context(pki.ca, pki.client_cert, pki.client_key))
    assert not _associate(config.port, _tls.client_context(pki.ca))  # no client certificate
    assert not _associate(config.port, _tls.client_context(pki.ca, pki.foreign_cert, pki.foreign_key))
    assert not _associate(config.port, None)  # plaintext
    # a client that does not trust our CA refuses us
    assert not _associate(config.port, _tls.client_context(pki.foreign_ca, pki.client_cert, pki.client_key))


def test_without_a_ca_any_tls_client_is_accepted_but_plaintext_is_not(tls_scp, pki):
    config, _ = tls_scp(mutual=False)
    assert _associate(config.port, _tls.client_context(pki.ca))
    assert not _associate(config.port, None)


def test_a_silent_connection_is_dropped_and_holds_nobody_back(tls_scp, pki, monkeypatch):
    monkeypatch.setattr(_tls._ServerContext, "handshake_timeout", 1.0)
    config, _ = tls_scp()
    with socket.create_connection(("127.0.0.1", config.port), timeout=10) as silent:
        t0 = time.monotonic()
        assert _associate(config.port, _tls.client_context(pki.ca, pki.client_cert, pki.client_key))
        assert time.monotonic() - t0 < 5
        assert silent.recv(1) == b""  # closed by the server
        assert time.monotonic() - t0 < 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tls_cert": "server.pem"}, "both --tls-cert and --tls-key"),
        ({"tls_ca": "ca.pem"}, "needs --tls-cert and --tls-key"),
        ({"tls_cert": "nothere.pem", "tls_key": "server.key"}, r"nothere.pem: cannot read the TLS certificate"),
        ({"tls_cert": "server.key", "tls_key": "server.key"}, r"server.key: the TLS certificate holds no usable"),
        ({"tls_cert": "server.pem", "tls_key": "client.key"}, r"client.key: the TLS private key does not belong"),
        ({"tls_cert": "server.pem", "tls_key": "server.pem"}, r"server.pem: the TLS private key cannot be loaded"),
        ({"tls_cert": "server.pem", "tls_key": "enc.key"}, r"enc.key: the TLS private key is encrypted"),
        ({"tls_cert": "server.pem", "tls_key": "server.key", "tls_ca": "leaf.ext"}, r"leaf.ext: the TLS CA file is not a PEM"),
    ],
)
def test_bad_tls_files_are_one_line_config_errors_naming_the_file(pki, tmp_path, kwargs, match):
    enc = pki.root / "enc.key"
    if not enc.exists():
        subprocess.run([require_tool("openssl", "openssl"), "pkey", "-in", str(pki.server_key), "-aes256",
                        "-passout", "pass:secret", "-out", str(enc)], check=True, capture_output=True, timeout=30)
    files = {k: pki.root / v for k, v in kwargs.items()}
    with pytest.raises(ConfigError, match=match) as err:
        NodeConfig(spool=tmp_path, destinations=(StowRsDestination("http://x/dw"),), **files)
    assert "\n" not in str(err.value)
