"""``thoracic serve --tls-cert --tls-key``: the real server over HTTPS (a subprocess on a free
loopback port), checked by httpx against the test CA and by the viewer in headless Chromium."""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
import subprocess
import warnings

import pytest
from helpers import SAMPLES
from serve_helpers import chrome, need, server_command, stop, wait_until_healthy

from thoracic._tls import client_context
from thoracic.errors import ConfigError
from thoracic.serve.config import ServeConfig

need("fastapi")
httpx = need("httpx")

TOKEN = "https-token-3f9a"


@pytest.fixture(scope="module")
def https(tmp_path_factory, pki):
    """``thoracic serve --port 0 --tls-cert --tls-key``; yields its https:// URL."""
    tmp = tmp_path_factory.mktemp("https")
    (tmp / "token").write_text(TOKEN + "\n")
    log = tmp / "server.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("THORACIC_TOKEN", None)
    cmd = [*server_command(), "--port", "0", "--token-file", str(tmp / "token"), "--threads", "1",
           "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=tmp)
    try:
        first = proc.stdout.readline()
        assert first.startswith("thoracic serve: https://"), (first, log.read_text()[-3000:])
        url = first.split()[2].rstrip("/")
        verify = client_context(pki.ca)
        wait_until_healthy(url, proc, log, verify)
        yield url
    finally:
        stop(proc)


def test_the_api_answers_over_https_verified_by_the_test_ca(https, pki):
    with httpx.Client(base_url=https, verify=client_context(pki.ca), timeout=60) as c:
        r = c.post("/v1/analyze", files={"file": ("chest.jpg", (SAMPLES / "00000377_004.jpg").read_bytes())},
                   headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200, r.text
        assert r.json()["findings"], "the sample has findings"
        assert c.get("/v1/models").status_code == 401  # TLS does not replace the token


def test_a_client_trusting_another_ca_refuses_the_server(https, pki):
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(https + "/health", verify=client_context(pki.foreign_ca))


def test_plain_http_gets_no_answer(https):
    plain = https.replace("https://", "http://")
    with pytest.raises(httpx.TransportError):
        httpx.get(plain + "/health", timeout=5)


def _capped(pki, version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(pki.ca))
    with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = version
    ctx.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer old versions at all
    return ctx


def test_tls_1_1_is_refused(https, pki):
    assert httpx.get(https + "/health", verify=_capped(pki, ssl.TLSVersion.TLSv1_2)).status_code == 200
    with pytest.raises(httpx.ConnectError, match="EOF|PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL"):
        httpx.get(https + "/health", verify=_capped(pki, ssl.TLSVersion.TLSv1_1))


def _spki_sha256(cert) -> str:
    """Chromium's SPKI pin of a certificate: base64(sha256(DER SubjectPublicKeyInfo))."""
    pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", str(cert)],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         capture_output=True, check=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_the_viewer_works_over_https_in_chromium(https, pki, require, tmp_path, monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # without trust in the test certificate Chromium shows its warning page instead of the viewer
    driver = chrome(require, tmp_path / "untrusted", monkeypatch)
    try:
        driver.get(https + "/")
        assert driver.title != "thoracic viewer"
    finally:
        driver.quit()
    # trusting the server certificate's public key (a headless Chromium has no CA store to add to)
    pin = _spki_sha256(pki.server_cert)
    driver = chrome(require, tmp_path / "trusted", monkeypatch, f"--ignore-certificate-errors-spki-list={pin}")
    try:
        driver.get(https + "/")
        assert driver.title == "thoracic viewer"
        assert driver.execute_script("return window.isSecureContext && location.protocol") == "https:"
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.ID, "file").send_keys(str(SAMPLES / "00000377_004.jpg"))
        driver.find_element(By.ID, "analyze").click()
        status = driver.find_element(By.ID, "status")
        WebDriverWait(driver, 90).until(lambda d: status.get_attribute("data-state") in ("done", "error"))
        assert status.get_attribute("data-state") == "done", status.text
        assert int(driver.find_element(By.ID, "canvas").get_attribute("data-boxes")) >= 1
    finally:
        driver.quit()


def test_tls_settings_are_checked_when_built(pki, tmp_path):
    assert ServeConfig(tls_cert=pki.server_cert, tls_key=pki.server_key).tls
    assert not ServeConfig().tls
    with pytest.raises(ConfigError, match="both a certificate and its private key"):
        ServeConfig(tls_cert=str(pki.server_cert))
    with pytest.raises(ConfigError, match=f"^{tmp_path / 'none.pem'}: cannot read the TLS certificate"):
        ServeConfig(tls_cert=str(tmp_path / "none.pem"), tls_key=str(pki.server_key))
    with pytest.raises(ConfigError, match=f"^{pki.client_key}: the TLS private key does not belong"):
        ServeConfig(tls_cert=str(pki.server_cert), tls_key=str(pki.client_key))
