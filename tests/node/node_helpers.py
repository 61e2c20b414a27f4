"""Helpers of the DICOM node tests: Orthanc, the node as a subprocess, DICOM copies, waiting."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from helpers import missing

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
NODE_AE = "THORACIC"
MODALITY_AE = "MODALITY"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


class Orthanc:
    """One Orthanc server (DICOM + REST + DICOMweb) in a temp dir."""

    def __init__(self, root: Path, name: str, node_port: int = 11112, dicom_port: int | None = None,
                 extra: dict | None = None, ca: Path | None = None):
        """``extra`` is merged into Orthanc's configuration; with ``"SslEnabled"`` its REST API and
        DICOMweb are HTTPS only and verified against ``ca``."""
        if not Path(ORTHANC).exists() or not Path(DICOMWEB_PLUGIN).exists():
            missing("Orthanc with its DICOMweb plugin (Debian packages orthanc, orthanc-dicomweb)")
        import httpx

        self.root = root / name
        self.root.mkdir(parents=True)
        self.aet = name.upper()[:16]
        self.http_port = free_port()
        self.dicom_port = dicom_port or free_port()
        config = {
            "Name": name,
            "StorageDirectory": str(self.root / "db"),
            "IndexDirectory": str(self.root / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "DicomModalities": {"thoracic": [NODE_AE, "127.0.0.1", node_port]},
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "ConcurrentJobs": 1,
            "HttpThreadsCount": 4,
            **(extra or {}),
        }
        (self.root / "orthanc.json").write_text(json.dumps(config, indent=1))
        self.log = open(self.root / "orthanc.log", "wb")  # noqa: SIM115
        https = bool(config.get("SslEnabled"))
        self.url = f"{'https' if https else 'http'}://127.0.0.1:{self.http_port}"
        self.dicomweb = f"{self.url}/dicom-web"
        verify: object = True
        if https:
            from thoracic._tls import client_context

            verify = client_context(ca)
        self.http = httpx.Client(base_url=self.url, timeout=30, verify=verify)
        self.start()
        plugins = self.http.get("/plugins").json()
        assert "dicom-web" in plugins, plugins

    def start(self) -> None:
        """Start Orthanc (again, on the same storage and ports) and wait until its REST API answers."""
        import httpx

        self.proc = subprocess.Popen([ORTHANC, str(self.root / "orthanc.json")], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}: see {self.root / 'orthanc.log'}")
            try:
                if self.http.get("/system").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("Orthanc did not start in 30 s")
            time.sleep(0.1)

    def kill(self) -> None:
        """Stop Orthanc at once (SIGKILL), as a crash or a pulled cable would; :meth:`start` brings it back."""
        self.proc.kill()
        self.proc.wait(10)

    def instances(self) -> list[dict]:
        """Every instance with its simplified tags."""
        ids = self.http.get("/instances").json()
        return [self.http.get(f"/instances/{i}/tags", params={"simplify": ""}).json() for i in ids]

    def results_by_study(self) -> dict[str, Counter]:
        """``{StudyInstanceUID: Counter({Modality: instances})}`` of everything stored (two requests)."""
        studies = {s["ID"]: s["MainDicomTags"]["StudyInstanceUID"] for s in self.http.get("/studies", params={"expand": ""}).json()}
        out: dict[str, Counter] = {}
        for series in self.http.get("/series", params={"expand": ""}).json():
            modality = series["MainDicomTags"].get("Modality", "")
            out.setdefault(studies[series["ParentStudy"]], Counter())[modality] += len(series["Instances"])
        return out

    def clear(self) -> None:
        for study in self.http.get("/studies").json():
            self.http.delete(f"/studies/{study}")

    def close(self) -> None:
        self.http.close()
        stop_process(self.proc)
        self.log.close()


#: storescu proposes uncompressed transfer syntaxes plus at most one compressed family: its flag.
PROPOSE = {
    "1.2.840.10008.1.2.4.50": "-xy",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "-xx",  # JPEG extended (12 bit)
    "1.2.840.10008.1.2.4.70": "-xs",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.90": "-xv",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "-xw",  # JPEG 2000
    "1.2.840.10008.1.2.4.80": "-xt",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "-xu",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.5": "-xr",  # RLE
}


def storescu_groups(files) -> dict[str, list[str]]:
    """``files`` by the storescu flag that proposes their transfer syntax (one association each)."""
    import pydicom

    groups: dict[str, list[str]] = {}
    for f in files:
        ts = str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        groups.setdefault(PROPOSE.get(ts, "-x="), []).append(str(f))
    return groups


def storescu_command(exe: str, port: int, files, flag: str = "-x=", *, aet: str = MODALITY_AE,
                     aec: str = NODE_AE) -> list[str]:
    """dcmtk's storescu sending ``files`` (one transfer syntax, proposed by ``flag``) in one association,
    going on after a failed C-STORE (``--no-halt``), one "Received Store Response (...)" line each."""
    return [exe, "-v", "--no-halt", flag, "-aet", aet, "-aec", aec, "127.0.0.1", str(port), *map(str, files)]


def store_responses(stderr: str) -> list[str]:
    """storescu's (``-v``) "Received Store Response (...)" statuses, in order."""
    return [line.split("(", 1)[1].rstrip(")") for line in stderr.splitlines() if "Received Store Response" in line]


@dataclass(frozen=True)
class ModalityRun:
    """One storescu process of :func:`send_concurrently`: exit status, responses and wall time."""

    returncode: int
    responses: tuple[str, ...]
    stderr: str
    started: float
    ended: float


def send_concurrently(exe: str, port: int, batches, timeout: float = 600.0, **names: str) -> list[ModalityRun]:
    """One storescu process per batch of files (each of one transfer syntax), all started at once
    (``time.monotonic()`` stamps); returns when every one has exited."""
    commands = []
    for files in batches:
        groups = storescu_groups(files)
        if len(groups) != 1:
            raise ValueError(f"a batch must be of one transfer syntax (storescu proposes one), got {sorted(groups)}")
        (flag, group), = groups.items()
        commands.append(storescu_command(exe, port, group, flag, **names))
    runs: list[ModalityRun | None] = [None] * len(commands)
    go = threading.Barrier(len(commands))

    def one(i: int) -> None:
        go.wait()
        started = time.monotonic()
        done = subprocess.run(commands[i], capture_output=True, text=True, timeout=timeout, check=False)
        runs[i] = ModalityRun(done.returncode, tuple(store_responses(done.stderr)), done.stderr, started, time.monotonic())

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(commands))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    missing_runs = [i for i, r in enumerate(runs) if r is None]
    if missing_runs:
        raise RuntimeError(f"storescu processes {missing_runs} did not finish (timeout {timeout} s?)")
    return [r for r in runs if r is not None]


#: What every analyzed image gets in its study: one SR, one GSPS (Modality PR) and one SEG.
ONE_EACH = Counter({"SR": 1, "PR": 1, "SEG": 1})


def result_problems(by_study: dict[str, Counter], studies) -> list[str]:
    """What is wrong with a PACS's results (:meth:`Orthanc.results_by_study`) of images sent in
    ``studies``: a study without exactly one SR, GSPS and SEG, or anything stored in another study."""
    expected = set(studies)
    problems = [f"study #{i}: {dict(by_study.get(s, Counter()))}" for i, s in enumerate(sorted(expected))
                if by_study.get(s, Counter()) != ONE_EACH]
    problems += [f"unexpected study: {dict(c)}" for s, c in by_study.items() if s not in expected]
    return problems


def make_copy(src: Path, out: Path, *, study: str | None = None, **attrs) -> Path:
    """A copy of ``src`` with new Study/Series/SOP Instance UIDs (or the given study) and ``attrs`` set."""
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(src)
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    with warnings.catch_warnings():  # invalid values on purpose (pydicom warns on them)
        warnings.simplefilter("ignore")
        for key, value in attrs.items():
            setattr(ds, key, value)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out


class NodeProcess:
    """``python -m thoracic.node`` as a subprocess, its log in a file."""

    def __init__(self, spool: Path, log: Path, args: list[str], port: int | None = None):
        self.spool, self.log_path, self.args = spool, log, args
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> NodeProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "thoracic.node", "--spool", str(self.spool), "--port", str(self.port),
               "--host", "127.0.0.1", "--ae-title", NODE_AE, *self.args]
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        wait_port(self.port, self.proc, timeout)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self) -> int:
        assert self.proc is not None
        stop_process(self.proc, 30)
        self._log.close()
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def queue_counts(spool: Path) -> dict[str, int]:
    """The job states, read straight from the node's database (read-only, while it runs)."""
    import sqlite3

    db = sqlite3.connect(f"file:{spool / 'queue.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
    except sqlite3.OperationalError:
        rows = []
    finally:
        db.close()
    return dict(rows)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what}: not after {timeout} s")


class TlsProxy:
    """A TLS-terminating reverse proxy (asyncio, in a thread) in front of a plain TCP port.

    Debian's Orthanc 1.10.1 crashes (SIGSEGV) on its first HTTPS request with ``SslEnabled``, so
    the HTTPS STOW-RS tests reach its plain HTTP port through this, as a site behind nginx does.
    """

    def __init__(self, context, target_port: int):
        import asyncio
        import threading

        self.target_port = target_port
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def handle(client_reader, client_writer):
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                client_writer.close()
                return
            await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))

        async def start():
            self.server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def close(self) -> None:
        async def stop():
            self.server.close()
            await self.server.wait_closed()

        import asyncio

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
