"""Sending result files to a PACS: DICOM C-STORE (SCU) and DICOMweb STOW-RS.

Both raise :class:`SendError` when any file is not stored, so the caller retries the whole set;
a PACS stores an instance it already holds (same SOP Instance UID) only once, and a PACS that
answers "duplicate SOP instance" (``0x0111``) for it counts as having stored it.

Every refusal is a :class:`SendError` naming the status and its meaning (``status 0xA700
(Refused: Out of Resources)``); a peer that does not answer within the destination's
``timeout`` has its association aborted (``no answer: aborted, or none within 60 s``). The worker retries all of
them with its backoff.
"""

from __future__ import annotations

import logging
import ssl
import uuid
from collections.abc import Sequence
from pathlib import Path

import pydicom

from thoracic.errors import ThoracicError
from thoracic.node.config import CStoreDestination, StowRsDestination

__all__ = ["SendError", "send_files"]

log = logging.getLogger("thoracic.node.send")

#: C-STORE statuses that mean "stored": success, the Storage service's warnings, and 0x0111
#: "Duplicate SOP Instance" (a resend after a crash: the PACS has it already).
_STORED = {0x0000, 0xB000, 0xB006, 0xB007, 0x0111}
_DUPLICATE = 0x0111


class SendError(ThoracicError, OSError):
    """A destination did not store every file (unreachable, refused, ...); worth retrying."""


def _headers(files: Sequence[Path]) -> list[tuple[Path, str, str]]:
    out = []
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out.append((path, str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)))
    return out


def _status_text(code: int) -> str:
    from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS

    meaning = STORAGE_SERVICE_CLASS_STATUS.get(code, ("", "unknown status"))[1]
    return f"status 0x{code:04X} ({meaning})"


def send_cstore(dest: CStoreDestination, files: Sequence[Path], *, calling_ae: str, timeout: float | None = None) -> None:
    """Send ``files`` to ``dest`` in one association (our ``calling_ae`` as the calling AE title).

    ``timeout`` (default: the destination's) bounds each wait for the peer.
    """
    from pynetdicom import AE

    timeout = dest.timeout if timeout is None else timeout
    headers = _headers(files)
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = min(timeout, 30.0)
    # one context per (SOP class, transfer syntax): each file goes as it is, never transcoded
    for sop_class, syntax in sorted({(h[1], h[2]) for h in headers}):
        ae.add_requested_context(sop_class, syntax)
    context = dest.ssl_context()
    tls_args = (context, dest.host) if context is not None else None
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls_args)
    if not assoc.is_established:
        _close_socket(assoc)
        if assoc.is_rejected:
            why = f"was rejected; check its AE title and that it accepts our AE title {calling_ae!r}"
        else:
            why = "failed (no connection, or aborted); check its host and port and that it is running"
            if context is not None:
                why += (" with TLS, that its certificate is signed by the CA we trust and names the host, "
                        "and that it accepts our certificate")
        raise SendError(f"association with {dest.name} {why}")
    try:
        for path, _, _ in headers:
            status = assoc.send_c_store(path)
            code = getattr(status, "Status", None)
            if code not in _STORED:
                what = (f"no answer: aborted, or none within {timeout:g} s" if code is None
                        else _status_text(code))
                raise SendError(f"{dest.name} did not store a result ({what})")
    finally:
        if assoc.is_established:
            assoc.release()


def _close_socket(assoc: object) -> None:
    """Close the socket of an association that failed (pynetdicom leaves it to the garbage collector)."""
    sock = getattr(getattr(getattr(assoc, "dul", None), "socket", None), "socket", None)
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass


def send_stowrs(dest: StowRsDestination, files: Sequence[Path]) -> None:
    """POST ``files`` to ``{dest.url}/studies`` as one ``multipart/related`` request."""
    import httpx

    boundary = f"thoracic-{uuid.uuid4().hex}"
    parts = []
    for path in files:
        parts += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), path.read_bytes(), b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }
    if dest.token:
        headers["Authorization"] = f"Bearer {dest.token}"
    auth = (dest.username, dest.password) if dest.username is not None and dest.password is not None else None
    url = dest.url.rstrip("/") + "/studies"
    try:
        with httpx.Client(timeout=dest.timeout, verify=dest.ssl_context(), auth=auth) as client:
            response = client.post(url, content=b"".join(parts), headers=headers)
    except httpx.HTTPError as err:
        cause = _cert_error(err)
        if cause is not None:
            detail = f"certificate not verified: {cause.verify_message}; give its CA with --stowrs-ca"
            raise SendError(f"{dest.name} cannot be reached ({detail})") from err
        raise SendError(f"{dest.name} cannot be reached ({type(err).__name__})") from err
    if response.status_code not in (200, 202, 409):
        # the body is not logged: it may quote the headers of what was sent
        raise SendError(f"{dest.name} answered HTTP {response.status_code} {response.reason_phrase}")
    try:
        body = response.json() if response.content else {}
    except ValueError:
        body = {}
    failed = body.get("00081198", {}).get("Value", []) if isinstance(body, dict) else []
    reasons = [_failure_reason(item) for item in failed]
    refused = [r for r in reasons if r != _DUPLICATE]  # a duplicate is stored already (a resend)
    if refused:
        codes = ", ".join(sorted({f"0x{r:04X}" if r is not None else "?" for r in refused}))
        raise SendError(f"{dest.name} refused {len(refused)} of {len(files)} result(s) (reasons {codes})")
    if response.status_code == 409 and not reasons:
        raise SendError(f"{dest.name} answered HTTP 409 Conflict without saying which instance failed")


def _cert_error(err: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = err
    for _ in range(8):  # httpx.ConnectError <- httpcore.ConnectError <- the ssl error
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _failure_reason(item: object) -> int | None:
    try:
        return int(item["00081197"]["Value"][0])  # type: ignore[index]
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def send_files(
    dest: CStoreDestination | StowRsDestination, files: Sequence[Path], *, calling_ae: str
) -> None:
    """Send ``files`` to one destination; raises :class:`SendError` unless all are stored."""
    files = [Path(f) for f in files]
    if isinstance(dest, CStoreDestination):
        send_cstore(dest, files, calling_ae=calling_ae)
    else:
        send_stowrs(dest, files)
    log.debug("%d file(s) stored by %s", len(files), dest.name)
