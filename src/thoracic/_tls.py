"""TLS contexts for the DICOM node and the HTTP service, built from PEM files.

Every problem with a file (missing, unreadable, not a PEM certificate, an encrypted or foreign
key) is a one-line :class:`~thoracic.errors.ConfigError` that names the file, raised when the
settings are built, so a service never starts half-configured. Contexts speak TLS 1.2 or newer
(BCP 195) and clients always verify the peer: against the given CA file, else the system store.
"""

from __future__ import annotations

import logging
import socket
import ssl
from os import PathLike
from pathlib import Path
from typing import Any

from thoracic.errors import ConfigError

__all__ = ["HANDSHAKE_TIMEOUT", "check_pair", "client_context", "server_context"]

log = logging.getLogger("thoracic.tls")

#: Seconds a client has to finish the TLS handshake with a server context made here.
HANDSHAKE_TIMEOUT = 10.0

PathArg = str | PathLike[str]


class _EncryptedKey(Exception):
    pass


def _no_password() -> bytes:
    # never let OpenSSL prompt on a terminal a service does not have
    raise _EncryptedKey


def _reason(err: ssl.SSLError) -> str:
    return (err.reason or str(err)).replace("_", " ").lower()


def _readable(path: PathArg, what: str) -> Path:
    p = Path(path)
    try:
        with p.open("rb") as f:
            head = f.read(64 * 1024)
    except OSError as err:
        raise ConfigError(f"cannot read the {what} ({err.strerror or err})", path=p) from err
    if b"-----BEGIN" not in head:
        raise ConfigError(f"the {what} is not a PEM file (no -----BEGIN line)", path=p)
    return p


def _load_cas(ctx: ssl.SSLContext, ca: PathArg, what: str) -> None:
    path = _readable(ca, what)
    try:
        ctx.load_verify_locations(cafile=str(path))
    except ssl.SSLError as err:
        raise ConfigError(f"the {what} holds no usable certificate ({_reason(err)})", path=path) from err


def _load_pair(ctx: ssl.SSLContext, cert: PathArg, key: PathArg) -> None:
    cert_path = _readable(cert, "TLS certificate")
    key_path = _readable(key, "TLS private key")
    _load_cas(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), cert_path, "TLS certificate")  # the certificate parses
    try:
        ctx.load_cert_chain(str(cert_path), str(key_path), password=_no_password)
    except _EncryptedKey as err:
        raise ConfigError("the TLS private key is encrypted; give an unencrypted key readable only by this service",
                          path=key_path) from err
    except ssl.SSLError as err:
        if "mismatch" in _reason(err):
            raise ConfigError(f"the TLS private key does not belong to the certificate {cert_path}",
                              path=key_path) from err
        raise ConfigError(f"the TLS private key cannot be loaded ({_reason(err)})", path=key_path) from err


def check_pair(cert: PathArg | None, key: PathArg | None, what: str = "TLS") -> None:
    """Check a certificate and its key: both or neither, both readable, matching.

    >>> check_pair(None, None)
    >>> check_pair("server.pem", None)
    Traceback (most recent call last):
    ...
    thoracic.errors.ConfigError: TLS needs both a certificate and its private key
    """
    if cert is None and key is None:
        return
    if cert is None or key is None:
        raise ConfigError(f"{what} needs both a certificate and its private key")
    _load_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), cert, key)


class _ServerContext(ssl.SSLContext):
    """A server context whose handshakes are bounded in time and whose refusals are logged.

    pynetdicom wraps each accepted socket in its accept loop; without a timeout a client that
    connects and says nothing would hold every other association back.
    """

    handshake_timeout: float = HANDSHAKE_TIMEOUT

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        if not kwargs.get("server_side"):
            return super().wrap_socket(sock, *args, **kwargs)
        try:
            peer = "{}:{}".format(*sock.getpeername()[:2])
        except OSError:
            peer = "?"
        sock.settimeout(self.handshake_timeout)
        try:
            tls = super().wrap_socket(sock, *args, **kwargs)
        except (OSError, ValueError) as err:
            why = _reason(err) if isinstance(err, ssl.SSLError) else type(err).__name__
            if why in ("wrong version number", "http request", "unknown protocol"):
                why += ": not a TLS handshake (a plaintext client?)"
            elif why == "peer did not return a certificate":
                why += ": mutual TLS needs a client certificate"
            log.warning("TLS handshake from %s refused (%s)", peer, why)
            sock.close()
            raise
        tls.settimeout(None)  # as a plain accepted socket: the association sets its own timeouts
        return tls


def server_context(cert: PathArg, key: PathArg, ca: PathArg | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ server context; with ``ca``, clients must present a certificate it signed."""
    ctx = _ServerContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_pair(ctx, cert, key)
    if ca is not None:
        _load_cas(ctx, ca, "TLS CA file")
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(ca: PathArg | None = None, cert: PathArg | None = None, key: PathArg | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ client context that verifies the server (and its host name).

    The server is checked against ``ca`` or, without it, the system's trusted certificates;
    ``cert``/``key`` are our own certificate for servers that require one (mutual TLS).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is not None:
        _load_cas(ctx, ca, "TLS CA file")
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cert is not None or key is not None:
        if cert is None or key is None:
            raise ConfigError("a TLS client certificate needs its private key, and a key its certificate")
        _load_pair(ctx, cert, key)
    return ctx
