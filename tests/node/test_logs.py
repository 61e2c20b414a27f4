"""The node's log filter: no instance UIDs, no quoted header values from pydicom or in warnings."""

from __future__ import annotations

import io
import logging
import warnings

import pytest
from pydicom.dataset import Dataset

from thoracic.node.logs import RedactIdentifiers, redact_uids


@pytest.fixture
def captured():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactIdentifiers())
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def test_pydicom_and_warnings_lose_their_quoted_values(captured):
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            Dataset().PatientSex = "zebediah"  # pydicom: "Invalid value for VR CS: 'zebediah'." (log + warning)
    finally:
        logging.captureWarnings(False)
    text = captured.getvalue()
    # the log record and the warning (pydicom's logger may already redact its own records)
    assert text.count("Invalid value for VR CS: ") == 2 and text.count("<value>") == 2
    assert "UserWarning" in text and "zebediah" not in text


def test_uids_become_digests_everywhere_but_standard_ones_stay(captured):
    log = logging.getLogger("thoracic.node.test")
    log.warning("stored %s of class %s", "1.2.826.0.1.3680043.8.498.12345", "1.2.840.10008.5.1.4.1.1.88.34")
    log.warning("instance 2.25.329800735698586629295641978511506172918; 'quoted' stays in our logs")
    text = captured.getvalue()
    assert "1.2.826.0.1.3680043.8.498.12345" not in text and redact_uids("1.2.826.0.1.3680043.8.498.12345") in text
    assert "1.2.840.10008.5.1.4.1.1.88.34" in text
    assert "2.25.3298" not in text and "'quoted' stays" in text


def test_network_addresses_stay_readable(captured):
    """``0.0.0.0`` and ``1.2.3.4`` have a UID's shape, yet they are where the node listens or who called."""
    log = logging.getLogger("thoracic.node.test")
    log.warning("listening on %s:%d as AE %s", "0.0.0.0", 11112, "THORACIC")
    log.warning("association from AE %r at %s accepted", "CR1", "2.1.0.7")
    log.warning("study %s", "1.2.3.4.5")
    text = captured.getvalue()
    assert "listening on 0.0.0.0:11112 as AE THORACIC" in text and "at 2.1.0.7 accepted" in text
    assert "1.2.3.4.5" not in text  # five components: a UID
