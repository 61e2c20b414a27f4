"""``thoracic dicom-node``: a DICOM C-STORE node that analyzes the radiographs sent to it.

- :mod:`.config`: :class:`NodeConfig` and the destinations;
- :mod:`.queue`: the persistent, bounded :class:`JobQueue` (SQLite + spool folder);
- :mod:`.spool`: the queue's state read-only (``--status``) and the repair of a damaged one
  (``--repair-spool``);
- :mod:`.scp`: the C-STORE SCP that admits CR/DX images into the queue;
- :mod:`.worker`: analysis, DICOM results, sending, retries;
- :mod:`.send`: C-STORE SCU and STOW-RS;
- :mod:`.service`: :class:`DicomNode`, all of it with a clean shutdown.

``python -m thoracic.node --spool DIR ...`` runs it like ``thoracic dicom-node``.
"""

from thoracic.node.config import CStoreDestination, NodeConfig, StowRsDestination
from thoracic.node.queue import (
    STATES,
    AddResult,
    Job,
    JobQueue,
    SpoolDamagedError,
    SpoolInUseError,
    SpoolIOError,
    SpoolLockedError,
    job_key,
)
from thoracic.node.send import SendError
from thoracic.node.service import DicomNode
from thoracic.node.spool import QueueStatus, RepairReport, read_status, repair_spool

__all__ = [
    "AddResult",
    "CStoreDestination",
    "DicomNode",
    "Job",
    "JobQueue",
    "NodeConfig",
    "QueueStatus",
    "RepairReport",
    "STATES",
    "SendError",
    "SpoolDamagedError",
    "SpoolIOError",
    "SpoolInUseError",
    "SpoolLockedError",
    "StowRsDestination",
    "job_key",
    "read_status",
    "repair_spool",
]
