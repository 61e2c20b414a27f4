"""The node's C-STORE SCP: receives projection radiographs into the :class:`~.queue.JobQueue`.

Accepted: Computed Radiography, Digital X-Ray (For Presentation and For Processing) and, unless
disabled, Secondary Capture images whose Modality is CR or DX. Every other storage SOP class is
negotiated too, so that its C-STORE can be answered with a clear refusal (``0x0122`` "SOP Class
Not Supported") and a log line rather than a bare association failure. Verification (C-ECHO)
is supported.

Answers to C-STORE:

- ``0x0000`` success: the image is on disk and its job committed (or it was received before).
- ``0xA700`` out of resources: the queue is full, or the image cannot be spooled (a full disk,
  the queue database refusing the write); nothing of it is kept and the modality retries later.
- ``0x0122`` SOP class not supported: not a projection radiograph.
- ``0xC000`` cannot understand: a data set without a usable SOP Instance UID.

With TLS configured (``NodeConfig.tls_cert``), every connection must complete a TLS handshake
(bounded to a few seconds) before its association is read: a plaintext association, or a
client without a certificate the CA signed under mutual TLS, is dropped and logged.

Logs name the calling AE, the SOP class and the job, never patient data or UIDs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pydicom.uid import UID

from thoracic.errors import ThoracicError
from thoracic.node.config import NodeConfig
from thoracic.node.queue import JobQueue, job_key

__all__ = ["RADIOGRAPH_SOP_CLASSES", "SECONDARY_CAPTURE", "STATUS", "make_ae", "start_scp"]

log = logging.getLogger("thoracic.node.scp")

#: Projection radiograph storage SOP classes the node analyzes.
RADIOGRAPH_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "CR Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
}
#: Secondary Capture Image Storage, accepted when its Modality is CR or DX.
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

#: The C-STORE statuses the SCP answers with.
STATUS = {
    "success": 0x0000,
    "out_of_resources": 0xA700,
    "sop_class_not_supported": 0x0122,
    "cannot_understand": 0xC000,
}


def _sop_name(uid: str) -> str:
    name = UID(uid).name
    return name if name != uid else f"SOP class {uid}"


class _StoreHandler:
    def __init__(self, config: NodeConfig, queue: JobQueue, model_sha256s: Iterable[str]):
        self.config = config
        self.queue = queue
        self.model_sha256s = tuple(model_sha256s)
        self.accepted = set(RADIOGRAPH_SOP_CLASSES) | ({SECONDARY_CAPTURE} if config.accept_secondary_capture else set())

    def __call__(self, event: Any) -> int:
        calling = event.assoc.requestor.ae_title.strip()
        sop_class = str(event.request.AffectedSOPClassUID)
        sop_uid = str(event.request.AffectedSOPInstanceUID or "").strip()
        if sop_class not in self.accepted:
            log.warning(
                "refused C-STORE from AE %r: %s is not a projection radiograph (status 0x0122)",
                calling,
                _sop_name(sop_class),
            )
            return STATUS["sop_class_not_supported"]
        if not sop_uid:
            log.warning("refused C-STORE from AE %r: no SOP Instance UID (status 0xC000)", calling)
            return STATUS["cannot_understand"]
        if sop_class == SECONDARY_CAPTURE:
            try:
                modality = str(event.dataset.get("Modality", "") or "").strip().upper()
            except Exception:  # noqa: BLE001 - a header pydicom cannot parse
                log.warning("refused C-STORE from AE %r: the data set cannot be parsed (status 0xC000)", calling)
                return STATUS["cannot_understand"]
            if modality not in ("CR", "DX"):
                log.warning(
                    "refused C-STORE from AE %r: a Secondary Capture image of modality %r is not a radiograph "
                    "(status 0x0122)",
                    calling,
                    modality[:8],
                )
                return STATUS["sop_class_not_supported"]
        key = job_key(sop_uid, self.model_sha256s)
        try:
            data = event.encoded_dataset(include_meta=True)
            result = self.queue.add(key, data, sop_instance_uid=sop_uid, sop_class_uid=sop_class, calling_ae=calling)
        except OSError as err:  # a full disk, the queue database refusing the write (SpoolIOError)
            why = err.message if isinstance(err, ThoracicError) else (err.strerror or "")
            log.error(
                "cannot spool an image from AE %r (%s: %s); nothing kept, answered out of resources (0xA700)",
                calling,
                type(err).__name__,
                why,
            )
            return STATUS["out_of_resources"]
        tag = f"job {result.job_id} [{key[:10]}]"
        if result.outcome == "full":
            log.warning(
                "queue full (%d pending of %d): refused an image from AE %r with out of resources (0xA700)",
                result.pending,
                self.queue.capacity,
                calling,
            )
            return STATUS["out_of_resources"]
        if result.outcome == "duplicate":
            log.info("%s: %s from AE %r received again (state %s); not queued twice",
                     tag, _sop_name(sop_class), calling, result.state)
            return STATUS["success"]
        log.info("%s: received %s from AE %r (%d pending)", tag, _sop_name(sop_class), calling, result.pending)
        return STATUS["success"]


def _on_rejected(event: Any) -> None:
    log.warning("association from AE %r at %s rejected (AE title not allowed or wrong called AE title)",
                event.assoc.requestor.ae_title.strip(), event.assoc.requestor.address)


def _on_established(event: Any) -> None:
    log.info("association from AE %r at %s accepted", event.assoc.requestor.ae_title.strip(),
             event.assoc.requestor.address)


def make_ae(config: NodeConfig) -> Any:
    """A pynetdicom ``AE`` with the node's AE title, presentation contexts and allowlist."""
    from pynetdicom import (
        AE,
        ALL_TRANSFER_SYNTAXES,
        StoragePresentationContexts,
        VerificationPresentationContexts,
    )

    ae = AE(ae_title=config.ae_title)
    ae.require_called_aet = True  # associations must be addressed to our AE title
    ae.require_calling_aet = list(config.allow_ae)  # empty: any calling AE title
    ae.maximum_pdu_size = 0  # no limit
    ae.supported_contexts = VerificationPresentationContexts
    ours = set(RADIOGRAPH_SOP_CLASSES) | {SECONDARY_CAPTURE}
    for uid in sorted(ours):
        ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
    for cx in StoragePresentationContexts:  # negotiated only to answer "not supported" clearly
        if cx.abstract_syntax is not None and cx.abstract_syntax not in ours:
            ae.add_supported_context(cx.abstract_syntax, cx.transfer_syntax)
    return ae


def start_scp(config: NodeConfig, queue: JobQueue, model_sha256s: Iterable[str]) -> Any:
    """Start the SCP in background threads; returns the server (``.shutdown()`` stops it)."""
    from pynetdicom import evt

    ae = make_ae(config)
    handlers = [
        (evt.EVT_C_STORE, _StoreHandler(config, queue, model_sha256s)),
        (evt.EVT_REJECTED, _on_rejected),
        (evt.EVT_ESTABLISHED, _on_established),
    ]
    server = ae.start_server((config.host, config.port), block=False, evt_handlers=handlers,
                             ssl_context=config.ssl_context())
    if not config.allow_ae:
        log.warning("no allowlist of calling AE titles (--allow-ae): any AE may send images")
    return server
