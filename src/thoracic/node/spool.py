"""Looking at a spool without running the node, and repairing a damaged one.

- :func:`read_status`: the queue's state, read-only (also while a node runs): the jobs in each
  state, those waiting to be tried again (attempts, next try, last error) and those failed. No
  patient data: jobs are named by number and a digest of their key, never by UID.
- :func:`repair_spool`: what ``thoracic dicom-node --spool DIR --repair-spool`` does when the
  node refuses to start on a damaged queue database (:class:`~.queue.SpoolDamagedError`). The
  database is moved aside into ``DIR/damaged-<time>/`` (kept, never deleted), the jobs SQLite can
  still read are carried over, and every image or result set still in the spool becomes a job
  again: an image alone is analyzed, saved results are sent (the same SOP Instance UIDs, which a
  PACS stores once). What cannot come back: the record of jobs finished before the damage whose
  row was unreadable (their files are deleted when they finish), so such an image, if received
  again, is analyzed again.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from thoracic.node.queue import (
    DATABASE,
    PENDING,
    REPAIR_HINT,
    STATES,
    SpoolDamagedError,
    SpoolLockedError,
    is_lock_error,
    lock_spool,
    open_database,
    prepare_database,
    spooled_files,
)

__all__ = ["JobSummary", "QueueStatus", "RepairReport", "read_counts", "read_status", "repair_spool"]

_KEY = re.compile(r"^[0-9a-f]{64}$")
#: What a result file is, by its Modality.
_KINDS = {"SR": "sr", "PR": "gsps", "SEG": "seg"}
_COLUMNS = ("id", "key", "sop_instance_uid", "sop_class_uid", "calling_ae", "state", "attempts", "next_at",
            "received_at", "updated_at", "sent", "outputs", "error")


@dataclass(frozen=True)
class JobSummary:
    """One job as the status shows it: no UIDs, no patient data."""

    id: int
    key: str
    state: str
    attempts: int
    next_in: float
    """Seconds until its next try (0: ready now)."""
    error: str
    """The last failure (a log-safe description), empty if none."""
    sent: tuple[str, ...]
    """The destinations that have its results."""

    @property
    def tag(self) -> str:
        return f"job {self.id} [{self.key[:10]}]"


@dataclass(frozen=True)
class QueueStatus:
    """The state of a spool's queue at one moment."""

    spool: Path
    counts: dict[str, int]
    node_running: bool | None
    """Whether a node holds the spool (``None``: this system cannot tell)."""
    retrying: tuple[JobSummary, ...]
    """Pending jobs that failed a try and wait for the next one, oldest first."""
    failed: tuple[JobSummary, ...]
    oldest_pending_s: float | None
    """Seconds since the oldest pending job was received (``None``: nothing pending)."""


def _connect_ro(spool: Path) -> sqlite3.Connection:
    path = spool / DATABASE
    if not path.is_file():
        raise FileNotFoundError(f"{spool}: no queue here ({DATABASE} is missing)")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10, isolation_level=None)


def _typed(err: sqlite3.Error, spool: Path) -> Exception:
    path = spool / DATABASE
    if isinstance(err, sqlite3.OperationalError) and is_lock_error(err):
        return SpoolLockedError(f"the queue database is locked by another process ({err}); find it with "
                                f"`fuser -v {path}`", path=path)
    return SpoolDamagedError(f"the queue database cannot be read ({err}); with the node stopped, run "
                             f"`{REPAIR_HINT.format(spool=spool)}`", path=path)


def _node_running(spool: Path) -> bool | None:
    """Whether a process holds the spool's lock file, read from ``/proc/locks`` (taking no lock)."""
    try:
        st = os.stat(spool / ".lock")
        locks = Path("/proc/locks").read_text()
    except FileNotFoundError:
        return False if Path("/proc/locks").exists() else None
    except OSError:
        return None
    inode = f":{st.st_ino}"
    for line in locks.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].endswith(inode):
            major, minor, ino = fields[5].split(":")
            if int(ino) == st.st_ino and os.makedev(int(major, 16), int(minor, 16)) == st.st_dev:
                return True
    return False


def read_status(spool: str | os.PathLike[str], *, clock: Callable[[], float] = time.time) -> QueueStatus:
    """The queue of ``spool``, read-only (works while a node runs on it; starts nothing).

    Raises :class:`FileNotFoundError` when ``spool`` holds no queue, :class:`SpoolDamagedError`
    when its database cannot be read and :class:`SpoolLockedError` when another process holds it
    exclusively.
    """
    root = Path(spool)
    db = _connect_ro(root)
    try:
        db.execute("BEGIN")  # one read transaction: the counts and the rows of one moment
        counts: dict[str, int] = dict.fromkeys(STATES, 0)
        counts.update(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
        rows = db.execute(
            "SELECT id, key, state, attempts, next_at, received_at, error, sent FROM jobs"
            " WHERE state != 'done' ORDER BY id"
        ).fetchall()
    except sqlite3.Error as err:
        raise _typed(err, root) from err
    finally:
        db.close()
    now = clock()
    retrying: list[JobSummary] = []
    failed: list[JobSummary] = []
    oldest: float | None = None
    for id_, key, state, attempts, next_at, received_at, error, sent in rows:
        job = JobSummary(int(id_), str(key), str(state), int(attempts), max(0.0, float(next_at) - now), str(error),
                         tuple(json.loads(sent or "[]")))
        if state in PENDING:
            oldest = received_at if oldest is None else min(oldest, received_at)
            if error:
                retrying.append(job)
        elif state == "failed":
            failed.append(job)
    return QueueStatus(root, counts, _node_running(root), tuple(retrying), tuple(failed),
                       None if oldest is None else max(0.0, now - oldest))


def read_counts(spool: str | os.PathLike[str]) -> dict[str, int]:
    """The number of jobs in each state (every state present), read-only."""
    return read_status(spool).counts


@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair_spool` did."""

    healthy: bool
    """The database was sound: nothing was changed."""
    moved_to: Path | None = None
    """The folder the old database (and its WAL) went to."""
    salvaged: int = 0
    """Jobs read back from the old database."""
    rebuilt_received: int = 0
    """Jobs rebuilt from a received image alone: analyzed again."""
    rebuilt_sending: int = 0
    """Jobs rebuilt from saved results: sent again, the same instances."""
    set_aside: tuple[str, ...] = ()
    """Spooled files or folders that could not be read, moved beside the old database."""
    counts: dict[str, int] = field(default_factory=dict)
    """The jobs of the new queue in each state."""


def _salvage(path: Path) -> dict[str, dict[str, object]]:
    """Rows SQLite can still read from a damaged database, by key (reading stops at the damage)."""
    rows: dict[str, dict[str, object]] = {}
    if not path.is_file():
        return rows
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return rows
    try:
        cur = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs ORDER BY id")
        while True:
            row = cur.fetchone()
            if row is None:
                break
            record = dict(zip(_COLUMNS, row, strict=True))
            if _KEY.match(str(record["key"])) and record["state"] in STATES:
                rows[str(record["key"])] = record
    except sqlite3.Error:
        pass  # the rest is unreadable: the spooled files stand for what was pending
    finally:
        db.close()
    return rows


def _outputs(folder: Path) -> list[dict[str, str]] | None:
    """The result files of a saved results folder, as the queue records them (``None``: unusable)."""
    import pydicom

    outputs = []
    for path in sorted(folder.glob("*.dcm")):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            kind = _KINDS[str(ds.Modality)]
            outputs.append({"kind": kind, "file": path.name, "sop_class_uid": str(ds.SOPClassUID),
                            "sop_instance_uid": str(ds.SOPInstanceUID)})
        except Exception:  # noqa: BLE001 - any damage makes the set unusable
            return None
    return outputs or None


def _image_uids(path: Path) -> tuple[str, str] | None:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return str(ds.SOPInstanceUID), str(ds.SOPClassUID)
    except Exception:  # noqa: BLE001 - an unreadable image is set aside
        return None


def repair_spool(spool: str | os.PathLike[str], *, clock: Callable[[], float] = time.time) -> RepairReport:
    """Rebuild the queue of a spool whose database is damaged or missing (the node stopped).

    A sound database is left alone (``healthy``). Otherwise the database files move into
    ``<spool>/damaged-<UTC time>/``, the readable rows are carried over, and each received image
    and saved result set without a row becomes a job: ``sending`` when its results are saved
    (their files are read back), else ``received``. Spooled files that cannot be read are moved
    beside the old database rather than deleted. Raises :class:`~.queue.SpoolInUseError` while a
    node runs on the spool and :class:`SpoolLockedError` while another process holds the
    database locked.
    """
    root = Path(spool)
    lockfile = lock_spool(root)
    try:
        try:
            open_database(root, lock_timeout=5.0).close()
            return RepairReport(healthy=True, counts=read_counts(root))
        except SpoolDamagedError:
            pass
        now = clock()
        aside = root / time.strftime("damaged-%Y%m%dT%H%M%SZ", time.gmtime(now))
        n = 1
        while aside.exists():
            n += 1
            aside = aside.with_name(aside.name.split(".")[0] + f".{n}")
        aside.mkdir(mode=0o700)
        moved = False
        for suffix in ("", "-wal", "-shm", "-journal"):
            src = root / f"{DATABASE}{suffix}"
            if src.exists():
                os.replace(src, aside / src.name)
                moved = True
        salvaged = _salvage(aside / DATABASE)
        for record in salvaged.values():
            if record["state"] == "analyzing":
                record["state"] = "received"  # as a restart does
        images, results = spooled_files(root)
        set_aside: list[str] = []
        rebuilt: dict[str, dict[str, object]] = {}
        by_key = {p.stem: p for p in images if _KEY.match(p.stem)}
        result_keys = {p.name for p in results if _KEY.match(p.name)}
        for key in sorted((set(by_key) | result_keys) - set(salvaged)):
            image = by_key.get(key)
            uids = _image_uids(image) if image is not None else None
            outputs = _outputs(root / "out" / key) if key in result_keys else None
            if key in result_keys and outputs is None:
                os.replace(root / "out" / key, aside / f"out-{key}")  # unusable results: analyzed again
                set_aside.append(f"out/{key}")
            if image is not None and uids is None:
                os.replace(image, aside / f"in-{image.name}")
                set_aside.append(f"in/{image.name}")
            if outputs is None and uids is None:
                continue  # nothing left to work with
            sop_uid, sop_class = uids or ("", "")
            received = image.stat().st_mtime if image is not None else now
            rebuilt[key] = {
                "key": key, "sop_instance_uid": sop_uid, "sop_class_uid": sop_class, "calling_ae": "",
                "state": "sending" if outputs else "received", "attempts": 0, "next_at": 0.0,
                "received_at": received, "updated_at": now, "sent": "[]", "outputs": json.dumps(outputs or []),
                "error": "rebuilt by --repair-spool",
            }
        path = root / DATABASE
        db = sqlite3.connect(path, isolation_level=None)
        try:
            prepare_database(db)
            db.execute("BEGIN IMMEDIATE")
            for record in [*sorted(salvaged.values(), key=lambda r: int(str(r["id"]))), *rebuilt.values()]:
                cols = [c for c in _COLUMNS if c in record]
                db.execute(f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                           [record[c] for c in cols])
            db.execute("COMMIT")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as err:
            raise _typed(err, root) from err
        finally:
            db.close()
        os.chmod(path, 0o600)
        if not (moved or set_aside):
            aside.rmdir()
        return RepairReport(
            healthy=False,
            moved_to=aside if moved or set_aside else None,
            salvaged=len(salvaged),
            rebuilt_received=sum(r["state"] == "received" for r in rebuilt.values()),
            rebuilt_sending=sum(r["state"] == "sending" for r in rebuilt.values()),
            set_aside=tuple(set_aside),
            counts=read_counts(root),
        )
    finally:
        lockfile.close()

