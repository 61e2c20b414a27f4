"""Real services for the DICOM node tests: Orthanc (+ DICOMweb) as the PACS, dcmtk's storescu as
the modality, and the node itself as a subprocess. All on loopback, free ports, temp dirs."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from helpers import FIXTURES, SAMPLES, missing
from node_helpers import MODALITY_AE, NODE_AE, Orthanc, free_port, storescu_command, storescu_groups

from thoracic.node.config import NodeConfig, StowRsDestination
from thoracic.node.queue import JobQueue
from thoracic.node.scp import start_scp

#: The model ids an in-process SCP records (no models are loaded).
SCP_MODELS = ("0" * 64,)


@pytest.fixture(scope="module")
def orthanc_factory(tmp_path_factory):
    servers: list[Orthanc] = []
    root = tmp_path_factory.mktemp("orthanc")

    def start(name: str = "pacs", node_port: int = 11112, dicom_port: int | None = None, **tls) -> Orthanc:
        server = Orthanc(root, name, node_port, dicom_port, **tls)
        servers.append(server)
        return server

    yield start
    for server in servers:  # Orthanc takes ~4 s to stop: stop them all at once
        server.proc.terminate()
    for server in servers:
        server.close()


@pytest.fixture(scope="session")
def storescu():
    """dcmtk's storescu as the modality: ``storescu(port, files, aet=...)`` -> list of CompletedProcess.

    One association per transfer syntax of the files (storescu proposes one compressed syntax
    at a time), in the order of ``files``' first appearance.
    """
    exe = shutil.which("storescu")
    if exe is None:
        missing("dcmtk's storescu (Debian package dcmtk)")

    def send(port: int, files, *, aet: str = MODALITY_AE, aec: str = NODE_AE, timeout: float = 60.0):
        return [subprocess.run(storescu_command(exe, port, group, flag, aet=aet, aec=aec),
                               capture_output=True, text=True, timeout=timeout, check=False)
                for flag, group in storescu_groups(files).items()]

    return send


@pytest.fixture(scope="session")
def radiographs():
    """Every DICOM radiograph of the repo (tests copy them with new UIDs: two share theirs)."""
    return [
        SAMPLES / "siim_cr_jpeg_baseline.dcm",
        FIXTURES / "nih_dx_implicit_le.dcm",
        SAMPLES / "RG1_J2KI.dcm",
        FIXTURES / "RG1_JLSN.dcm",
        FIXTURES / "siim_cr_fake_monochrome1.dcm",
    ]


@pytest.fixture
def scp(tmp_path):
    """Start an SCP (queue only, no worker): ``scp(**config) -> (config, queue)``."""
    started = []

    def start(**overrides):
        settings = dict(spool=tmp_path / f"spool{len(started)}", destinations=(StowRsDestination("http://127.0.0.1:9/dicom-web"),),
                        ae_title=NODE_AE, host="127.0.0.1", port=free_port(), queue_size=10)
        settings.update(overrides)
        config = NodeConfig(**settings)
        queue = JobQueue(config.spool, config.queue_size)
        started.append((start_scp(config, queue, SCP_MODELS), queue))
        return config, queue

    yield start
    for server, queue in started:
        server.shutdown()
        queue.close()
