"""The node's persistent, bounded job queue: SQLite (WAL) plus a spool folder of received images.

One job per received image. Its state moves

``received -> analyzing -> sending -> done``, or to ``failed``

and every move is committed before the node acts on it, so a crash (even ``kill -9``) loses
nothing: on restart :meth:`JobQueue.recover` puts jobs that were being analyzed back to
``received``, and jobs in ``sending`` resend the result files already saved, with the same SOP
Instance UIDs (a PACS stores an instance it already has only once).

A job's key is :func:`job_key`: the SOP Instance UID of the image and the SHA-256 of every model,
so an image received twice is analyzed once, while new models analyze it again.

The received file is written to ``in/`` and fsynced, and its job committed, before
:meth:`JobQueue.add` returns: only then does the SCP answer the C-STORE with success.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from thoracic.errors import ThoracicError

__all__ = ["AddResult", "Job", "JobQueue", "STATES", "SpoolInUseError", "State", "job_key", "read_counts"]

State = Literal["received", "analyzing", "sending", "done", "failed"]
#: Every state of a job, in order.
STATES: tuple[State, ...] = ("received", "analyzing", "sending", "done", "failed")
_PENDING = ("received", "analyzing", "sending")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    sop_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    calling_ae TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    sent TEXT NOT NULL DEFAULT '[]',
    outputs TEXT NOT NULL DEFAULT '[]',
    error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, next_at);
"""


class SpoolInUseError(ThoracicError, RuntimeError):
    """Another process holds the spool (two nodes on one queue would process jobs twice)."""


def job_key(sop_instance_uid: str, model_sha256s: Iterable[str]) -> str:
    """The idempotency key of a job: SHA-256 of the SOP Instance UID and the models' SHA-256s.

    >>> job_key("1.2.3", ["b", "a"]) == job_key("1.2.3", ["a", "b"])
    True
    >>> job_key("1.2.3", ["a"]) == job_key("1.2.3", ["c"])
    False
    """
    text = "\n".join([sop_instance_uid.strip(), *sorted(model_sha256s)])
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Job:
    """One row of the queue (a snapshot; the queue holds the truth)."""

    id: int
    key: str
    state: State
    attempts: int
    calling_ae: str
    sop_class_uid: str
    sent: tuple[str, ...]
    outputs: tuple[dict[str, str], ...]
    error: str
    input_path: Path
    results_dir: Path

    @property
    def tag(self) -> str:
        """How logs name the job: its number and the first hex digits of its key (no UIDs)."""
        return f"job {self.id} [{self.key[:10]}]"


@dataclass(frozen=True)
class AddResult:
    """What :meth:`JobQueue.add` did: ``queued``, ``duplicate`` (already known) or ``full``."""

    outcome: Literal["queued", "duplicate", "full"]
    job_id: int | None = None
    state: str = ""
    pending: int = 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename (all or nothing)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class JobQueue:
    """A bounded queue of analysis jobs, persisted in ``<spool>/queue.sqlite3``.

    Parameters
    ----------
    spool:
        The folder holding the database, the received images (``in/``) and the results
        (``out/``); created (mode 0700) if missing.
    capacity:
        At most this many jobs are pending (received, analyzing or sending); :meth:`add`
        answers ``full`` beyond it.
    clock:
        The time source (seconds), for retry delays.

    Safe to use from many threads of one process (one connection behind a lock). Only one
    process may use a spool at a time; a second one gets a :class:`SpoolInUseError` (a lock file).
    """

    def __init__(self, spool: str | os.PathLike[str], capacity: int = 100, *, clock: Callable[[], float] = time.time):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.spool = Path(spool)
        self.capacity = capacity
        self._clock = clock
        for sub in ("", "in", "out"):
            (self.spool / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lockfile = open(self.spool / ".lock", "a")  # noqa: SIM115 - held while the queue is open
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            self._lockfile.close()
            raise SpoolInUseError(
                "the spool is in use by another process (one node per spool: stop the other node, "
                "or give this one its own --spool)",
                path=self.spool,
            ) from err
        self._lock = threading.RLock()
        self._claimed: set[int] = set()
        self.changed = threading.Event()  # set whenever a job becomes ready
        self._db = sqlite3.connect(
            self.spool / "queue.sqlite3", isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        os.chmod(self.spool / "queue.sqlite3", 0o600)

    # --- plumbing ---------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._lockfile.close()  # releases the flock

    def __enter__(self) -> JobQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def input_path(self, key: str) -> Path:
        return self.spool / "in" / f"{key}.dcm"

    def results_dir(self, key: str) -> Path:
        return self.spool / "out" / key

    def _job(self, row: sqlite3.Row) -> Job:
        return Job(
            id=row["id"],
            key=row["key"],
            state=row["state"],
            attempts=row["attempts"],
            calling_ae=row["calling_ae"],
            sop_class_uid=row["sop_class_uid"],
            sent=tuple(json.loads(row["sent"])),
            outputs=tuple(json.loads(row["outputs"])),
            error=row["error"],
            input_path=self.input_path(row["key"]),
            results_dir=self.results_dir(row["key"]),
        )

    def _pending(self, db: sqlite3.Connection) -> int:
        q = f"SELECT COUNT(*) FROM jobs WHERE state IN ({','.join('?' * len(_PENDING))})"
        return int(db.execute(q, _PENDING).fetchone()[0])

    # --- receiving ----------------------------------------------------------------------------
    def add(self, key: str, data: bytes, *, sop_instance_uid: str, sop_class_uid: str, calling_ae: str) -> AddResult:
        """Store a received image and queue its job, unless it is known or the queue is full.

        The file is on disk (fsynced) and the job committed when this returns ``queued``. A job
        that ``failed`` is queued again (sending the image again is how an operator retries): from
        ``sending`` if its results were saved, else from ``received``.
        """
        now = self._clock()
        with self._tx() as db:
            row = db.execute("SELECT id, state, outputs FROM jobs WHERE key = ?", (key,)).fetchone()
            pending = self._pending(db)
            if row is not None and row["state"] != "failed":
                return AddResult("duplicate", row["id"], row["state"], pending)
            if pending >= self.capacity:
                return AddResult("full", None, "", pending)
            write_atomic(self.input_path(key), data)
            if row is None:
                cur = db.execute(
                    "INSERT INTO jobs (key, sop_instance_uid, sop_class_uid, calling_ae, state, received_at, updated_at)"
                    " VALUES (?, ?, ?, ?, 'received', ?, ?)",
                    (key, sop_instance_uid, sop_class_uid, calling_ae, now, now),
                )
                job_id, state = int(cur.lastrowid), "received"
            else:
                job_id = int(row["id"])
                outputs = json.loads(row["outputs"])
                saved = bool(outputs) and all((self.results_dir(key) / o.get("file", "")).is_file() for o in outputs)
                # results already saved (sending had failed): send those, never new ones beside them
                state = "sending" if saved else "received"
                keep = "" if saved else ", sent = '[]', outputs = '[]'"
                db.execute(
                    f"UPDATE jobs SET state = ?, attempts = 0, next_at = 0, error = ''{keep}, calling_ae = ?,"
                    " updated_at = ? WHERE id = ?",
                    (state, calling_ae, now, job_id),
                )
        self.changed.set()
        return AddResult("queued", job_id, state, pending + 1)

    # --- working ------------------------------------------------------------------------------
    def recover(self, *, keep_done: bool = False) -> int:
        """After a restart: jobs left ``analyzing`` go back to ``received``; orphan files go.

        Orphans are images written whose C-STORE was never answered (the modality sends them
        again), temporary files, and the files of finished jobs unless ``keep_done``. Returns the
        number of jobs put back. Call once, before any worker starts.
        """
        with self._tx() as db:
            n = db.execute(
                "UPDATE jobs SET state = 'received', updated_at = ? WHERE state = 'analyzing'", (self._clock(),)
            ).rowcount
            where = "" if keep_done else " WHERE state != 'done'"
            keep = {r["key"] for r in db.execute("SELECT key FROM jobs" + where)}
        self._claimed.clear()
        for path in (self.spool / "in").iterdir():
            if path.name.startswith(".") or path.stem not in keep:
                path.unlink(missing_ok=True)
        for path in (self.spool / "out").iterdir():
            if path.name.startswith(".") or path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)
        self.changed.set()
        return n

    def claim(self) -> Job | None:
        """Take the next ready job: ``received`` (it becomes ``analyzing``) or ``sending``.

        A job is ready when its retry delay has passed; received jobs go first, oldest first.
        A claimed job belongs to the caller until it moves on (:meth:`to_sending`, :meth:`retry`,
        :meth:`done`, :meth:`fail`, :meth:`release`).
        """
        now = self._clock()
        with self._tx() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE state IN ('received', 'sending') AND next_at <= ?"
                " ORDER BY state = 'sending' DESC, next_at, id",
                (now,),
            ).fetchall()
            for row in rows:
                if row["id"] in self._claimed:
                    continue
                self._claimed.add(row["id"])
                if row["state"] == "received":
                    db.execute(
                        "UPDATE jobs SET state = 'analyzing', attempts = attempts + 1, updated_at = ? WHERE id = ?",
                        (now, row["id"]),
                    )
                else:
                    db.execute("UPDATE jobs SET attempts = attempts + 1, updated_at = ? WHERE id = ?", (now, row["id"]))
                return self._job(db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())
        return None

    def _move(self, job_id: int, sets: str, args: tuple, *, release: bool) -> None:
        with self._tx() as db:
            db.execute(f"UPDATE jobs SET {sets}, updated_at = ? WHERE id = ?", (*args, self._clock(), job_id))
        if release:
            self._claimed.discard(job_id)
            self.changed.set()

    def to_sending(self, job_id: int, outputs: Iterable[dict[str, str]]) -> None:
        """The results are saved in the job's results folder: from now on they are only sent.

        The caller sends them at once: that is the first sending attempt.
        """
        self._move(
            job_id,
            "state = 'sending', attempts = 1, next_at = 0, sent = '[]', outputs = ?, error = ''",
            (json.dumps(list(outputs)),),
            release=False,
        )

    def mark_sent(self, job_id: int, destination: str) -> None:
        """One destination has every result file of the job."""
        with self._tx() as db:
            row = db.execute("SELECT sent FROM jobs WHERE id = ?", (job_id,)).fetchone()
            sent = json.loads(row["sent"])
            if destination not in sent:
                sent.append(destination)
            db.execute("UPDATE jobs SET sent = ?, updated_at = ? WHERE id = ?", (json.dumps(sent), self._clock(), job_id))

    def done(self, job_id: int) -> None:
        self._move(job_id, "state = 'done', next_at = 0, error = ''", (), release=True)

    def retry(self, job_id: int, error: str, delay: float) -> None:
        """A transient failure: try the job's current step again after ``delay`` seconds."""
        self._move(
            job_id,
            "state = CASE state WHEN 'analyzing' THEN 'received' ELSE state END, next_at = ?, error = ?",
            (self._clock() + delay, error),
            release=True,
        )

    def reanalyze(self, job_id: int, error: str) -> None:
        """Back to ``received`` (the saved results are gone): analyzed again, nothing was sent."""
        self._move(job_id, "state = 'received', attempts = 0, next_at = 0, sent = '[]', outputs = '[]', error = ?",
                   (error,), release=True)

    def fail(self, job_id: int, error: str) -> None:
        """A permanent failure (an image that cannot be analyzed, retries exhausted)."""
        self._move(job_id, "state = 'failed', error = ?", (error,), release=True)

    def release(self, job_id: int) -> None:
        """Give a claimed job back unchanged (a shutdown in the middle of it)."""
        self._move(
            job_id,
            "state = CASE state WHEN 'analyzing' THEN 'received' ELSE state END, attempts = MAX(attempts - 1, 0)",
            (),
            release=True,
        )

    # --- looking ------------------------------------------------------------------------------
    def pending(self) -> int:
        """Jobs received, analyzing or sending."""
        with self._lock:
            return self._pending(self._db)

    def counts(self) -> dict[str, int]:
        """The number of jobs in each state (every state present, zeros included)."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetchall()
        out = dict.fromkeys(STATES, 0)
        out.update({r["state"]: r["n"] for r in rows})
        return out

    def jobs(self, state: State | None = None) -> list[Job]:
        with self._lock:
            if state is None:
                rows = self._db.execute("SELECT * FROM jobs ORDER BY id").fetchall()
            else:
                rows = self._db.execute("SELECT * FROM jobs WHERE state = ? ORDER BY id", (state,)).fetchall()
        return [self._job(r) for r in rows]

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else self._job(row)

    def next_ready_in(self) -> float | None:
        """Seconds until the next job waiting for a retry is ready (``None`` if none waits)."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_at) FROM jobs WHERE state IN ('received', 'sending')"
            ).fetchone()
        return None if row[0] is None else max(0.0, row[0] - self._clock())


def read_counts(spool: str | os.PathLike[str]) -> dict[str, int]:
    """The number of jobs in each state, read-only: works while a node runs on ``spool``.

    Raises :class:`FileNotFoundError` when ``spool`` holds no queue.
    """
    path = Path(spool) / "queue.sqlite3"
    if not path.is_file():
        raise FileNotFoundError(f"{spool}: no queue here (queue.sqlite3 is missing)")
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
    finally:
        db.close()
    out = dict.fromkeys(STATES, 0)
    out.update(dict(rows))
    return out
