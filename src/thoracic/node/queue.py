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

Opening a spool never resets it silently: a database that SQLite cannot read, fails its
``quick_check``, or is missing while the spool still holds received images or results raises
:class:`SpoolDamagedError` (the operator runs ``thoracic dicom-node --spool DIR --repair-spool``,
:func:`thoracic.node.spool.repair_spool`); one another process holds locked raises
:class:`SpoolLockedError`. While the node runs, a write the database refuses (a full disk, a lock
held too long) raises :class:`SpoolIOError`, an ``OSError``: the C-STORE is refused and the
workers wait, and nothing committed before is touched.
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
from typing import IO, Literal

from thoracic.errors import ThoracicError

__all__ = [
    "AddResult",
    "DATABASE",
    "Job",
    "JobQueue",
    "PENDING",
    "REPAIR_HINT",
    "STATES",
    "SpoolDamagedError",
    "SpoolIOError",
    "SpoolInUseError",
    "SpoolLockedError",
    "State",
    "is_lock_error",
    "job_key",
    "lock_spool",
    "open_database",
    "prepare_database",
    "spooled_files",
]

State = Literal["received", "analyzing", "sending", "done", "failed"]
#: Every state of a job, in order.
STATES: tuple[State, ...] = ("received", "analyzing", "sending", "done", "failed")
#: The states of a job not finished yet.
PENDING: tuple[State, ...] = ("received", "analyzing", "sending")

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


#: The queue's database, in the spool folder.
DATABASE = "queue.sqlite3"
#: The command that rebuilds a damaged queue (with the spool folder in place of ``{spool}``).
REPAIR_HINT = "thoracic dicom-node --spool {spool} --repair-spool"
#: Seconds :class:`JobQueue` waits at start for a database another process holds locked.
START_LOCK_TIMEOUT = 5.0


class SpoolInUseError(ThoracicError, RuntimeError):
    """Another process holds the spool (two nodes on one queue would process jobs twice)."""


class SpoolDamagedError(ThoracicError, RuntimeError):
    """The queue database is unreadable, inconsistent or missing beside spooled files.

    Never reset silently: ``thoracic dicom-node --spool DIR --repair-spool`` moves it aside and
    rebuilds the queue from what is readable and from the spooled files.
    """


class SpoolLockedError(ThoracicError, RuntimeError):
    """Another process (an ``sqlite3`` shell, a backup tool) holds the queue database locked."""


class SpoolIOError(ThoracicError, OSError):
    """The queue database refused a read or a write (a full disk, a lock held too long, an I/O error).

    Nothing committed before is lost; the write is worth trying again later.
    """


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


def spooled_files(spool: str | os.PathLike[str]) -> tuple[list[Path], list[Path]]:
    """The received images (``in/<key>.dcm``) and result folders (``out/<key>``) in ``spool``.

    Temporary files and folders (their names start with a dot) are left out.
    """
    root = Path(spool)
    images = sorted(p for p in _entries(root / "in") if p.suffix == ".dcm" and p.is_file())
    results = sorted(p for p in _entries(root / "out") if p.is_dir())
    return images, results


def _entries(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if not p.name.startswith(".")]
    except FileNotFoundError:
        return []


def _flat(lines: list[str]) -> str:
    """SQLite's check lines as one line."""
    return "; ".join(" ".join(str(line).split()) for line in lines)


def is_lock_error(err: sqlite3.Error) -> bool:
    text = str(err).lower()
    return "locked" in text or "busy" in text


def _io_error(err: sqlite3.Error) -> SpoolIOError:
    what = "is locked by another process" if is_lock_error(err) else "refused the operation"
    return SpoolIOError(f"the queue database {what} ({err})")


def open_database(spool: Path, lock_timeout: float) -> sqlite3.Connection:
    """Open (or create) the queue database, refusing a damaged, locked or vanished one."""
    path = spool / DATABASE
    existed = path.exists()
    hint = REPAIR_HINT.format(spool=spool)
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=lock_timeout)
    except sqlite3.Error as err:
        raise SpoolIOError(f"the queue database cannot be opened ({err})", path=path) from err
    try:
        db.row_factory = sqlite3.Row
        try:
            check = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
            has_jobs = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'").fetchone()
            if check != ["ok"]:
                raise SpoolDamagedError(
                    f"the queue database is damaged (SQLite's check: {_flat(check[:3])}); the node will not "
                    f"start on it. Stop everything using the spool and run `{hint}`: it moves the database aside "
                    "(kept, never deleted) and rebuilds the queue from it and from the spooled files",
                    path=path,
                )
            if not has_jobs:
                images, results = spooled_files(spool)
                if images or results:
                    what = "missing" if not existed else "empty (no jobs table)"
                    raise SpoolDamagedError(
                        f"the queue database is {what}, but the spool holds {len(images)} received image(s) and "
                        f"{len(results)} result folder(s): a new queue would forget them. Run `{hint}` to "
                        "rebuild the queue from them",
                        path=path,
                    )
            db.execute("BEGIN IMMEDIATE")  # a write lock within lock_timeout, or another process holds it
            db.execute("ROLLBACK")
            prepare_database(db)
        except sqlite3.OperationalError as err:
            if is_lock_error(err):
                raise SpoolLockedError(
                    f"the queue database is locked by another process (still after {lock_timeout:g} s: {err}). "
                    f"Find it with `fuser -v {path}` (an sqlite3 shell, a backup or another tool with a transaction "
                    "open), end it, and start the node again; nothing in the spool was changed",
                    path=path,
                ) from err
            raise SpoolIOError(f"the queue database cannot be opened ({err})", path=path) from err
        except sqlite3.DatabaseError as err:  # "file is not a database", "database disk image is malformed"
            raise SpoolDamagedError(
                f"the queue database is damaged ({err}); the node will not start on it. Stop everything using "
                f"the spool and run `{hint}`: it moves the database aside (kept, never deleted) and rebuilds "
                "the queue from it and from the spooled files",
                path=path,
            ) from err
    except BaseException:
        db.close()
        if not existed:  # created by this attempt: leave the spool as it was
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        raise
    return db


def lock_spool(spool: Path) -> IO[str]:
    """Create the spool's folders and take its lock file; the lock holds until the file is closed.

    Raises :class:`SpoolInUseError` when another process holds it.
    """
    for sub in ("", "in", "out"):
        (spool / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    lockfile = open(spool / ".lock", "a")  # noqa: SIM115 - the caller closes it
    try:
        fcntl.flock(lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        lockfile.close()
        raise SpoolInUseError(
            "the spool is in use by another process (one node per spool: stop the other node, "
            "or give this one its own --spool)",
            path=spool,
        ) from err
    return lockfile


def prepare_database(db: sqlite3.Connection) -> None:
    """WAL, full synchronous commits and the jobs table (kept if it exists)."""
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(_SCHEMA)


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
    lock_timeout:
        Seconds to wait at opening for a database another process holds locked before raising
        :class:`SpoolLockedError`.
    write_timeout:
        Once open, seconds a write waits for such a lock before raising :class:`SpoolIOError`.

    Safe to use from many threads of one process (one connection behind a lock). Only one
    process may use a spool at a time; a second one gets a :class:`SpoolInUseError` (a lock file).
    A damaged database raises :class:`SpoolDamagedError` (never reset silently).
    """

    def __init__(
        self,
        spool: str | os.PathLike[str],
        capacity: int = 100,
        *,
        clock: Callable[[], float] = time.time,
        lock_timeout: float = START_LOCK_TIMEOUT,
        write_timeout: float = 30.0,
    ):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.spool = Path(spool)
        self.capacity = capacity
        self._clock = clock
        self._lockfile = lock_spool(self.spool)  # held while the queue is open
        self._lock = threading.RLock()
        self._claimed: set[int] = set()
        self.changed = threading.Event()  # set whenever a job becomes ready
        try:
            self._db = open_database(self.spool, lock_timeout)
        except BaseException:
            self._lockfile.close()
            raise
        self._db.execute(f"PRAGMA busy_timeout = {int(write_timeout * 1000)}")
        os.chmod(self.spool / DATABASE, 0o600)

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
        """One write transaction: committed whole, or rolled back (a failed COMMIT included)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise _io_error(err) from err
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as err:
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # SQLite rolls back itself on the errors that prevent this
                if isinstance(err, sqlite3.Error):
                    raise _io_error(err) from err
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as err:
                raise _io_error(err) from err

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
        q = f"SELECT COUNT(*) FROM jobs WHERE state IN ({','.join('?' * len(PENDING))})"
        return int(db.execute(q, PENDING).fetchone()[0])

    # --- receiving ----------------------------------------------------------------------------
    def add(self, key: str, data: bytes, *, sop_instance_uid: str, sop_class_uid: str, calling_ae: str) -> AddResult:
        """Store a received image and queue its job, unless it is known or the queue is full.

        The file is on disk (fsynced) and the job committed when this returns ``queued``. A job
        that ``failed`` is queued again (sending the image again is how an operator retries): from
        ``sending`` if its results were saved, else from ``received``.
        """
        now = self._clock()
        new_file = False
        try:
            with self._tx() as db:
                row = db.execute("SELECT id, state, outputs FROM jobs WHERE key = ?", (key,)).fetchone()
                pending = self._pending(db)
                if row is not None and row["state"] != "failed":
                    return AddResult("duplicate", row["id"], row["state"], pending)
                if pending >= self.capacity:
                    return AddResult("full", None, "", pending)
                write_atomic(self.input_path(key), data)
                new_file = row is None
                job_id, state = self._queue_row(db, key, row, now, sop_instance_uid, sop_class_uid, calling_ae)
        except BaseException:
            if new_file:  # written, but its job not committed (a full disk): nothing of it stays
                self.input_path(key).unlink(missing_ok=True)
            raise
        self.changed.set()
        return AddResult("queued", job_id, state, pending + 1)

    def _queue_row(self, db: sqlite3.Connection, key: str, row: sqlite3.Row | None, now: float,
                   sop_instance_uid: str, sop_class_uid: str, calling_ae: str) -> tuple[int, str]:
        """Insert the job of a new image, or queue a failed one again; returns its id and state."""
        if row is None:
            cur = db.execute(
                "INSERT INTO jobs (key, sop_instance_uid, sop_class_uid, calling_ae, state, received_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'received', ?, ?)",
                (key, sop_instance_uid, sop_class_uid, calling_ae, now, now),
            )
            assert cur.lastrowid is not None  # an INSERT sets it
            job_id, state = cur.lastrowid, "received"
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
        return job_id, state

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
        with self._read() as db:
            return self._pending(db)

    def counts(self) -> dict[str, int]:
        """The number of jobs in each state (every state present, zeros included)."""
        with self._read() as db:
            rows = db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetchall()
        out: dict[str, int] = dict.fromkeys(STATES, 0)
        out.update({r["state"]: r["n"] for r in rows})
        return out

    def jobs(self, state: State | None = None) -> list[Job]:
        with self._read() as db:
            if state is None:
                rows = db.execute("SELECT * FROM jobs ORDER BY id").fetchall()
            else:
                rows = db.execute("SELECT * FROM jobs WHERE state = ? ORDER BY id", (state,)).fetchall()
        return [self._job(r) for r in rows]

    def get(self, job_id: int) -> Job | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else self._job(row)

    def next_ready_in(self) -> float | None:
        """Seconds until the next job waiting for a retry is ready (``None`` if none waits)."""
        with self._read() as db:
            row = db.execute("SELECT MIN(next_at) FROM jobs WHERE state IN ('received', 'sending')").fetchone()
        return None if row[0] is None else max(0.0, row[0] - self._clock())

