"""The settings of a DICOM node: one frozen dataclass, validated when built."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from thoracic.errors import ConfigError

__all__ = ["CStoreDestination", "NodeConfig", "StowRsDestination", "check_ae_title"]

_AE_CHARS = re.compile(r"^[\x20-\x7e]{1,16}$")


def check_ae_title(title: str, what: str = "AE title") -> str:
    """Validate a DICOM Application Entity title and return it without padding.

    >>> check_ae_title(" THORACIC ")
    'THORACIC'
    """
    stripped = title.strip()
    if not stripped or not _AE_CHARS.match(stripped) or "\\" in stripped:
        raise ConfigError(
            f"{what} {title!r} is not a valid AE title: 1 to 16 printable ASCII characters, no backslash"
        )
    return stripped


def _check_port(port: int, what: str) -> int:
    if not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what} must be a TCP port number (0-65535), got {port}")
    return int(port)


@dataclass(frozen=True)
class CStoreDestination:
    """A DICOM peer (a PACS) that receives the results by C-STORE."""

    ae_title: str
    host: str
    port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", check_ae_title(self.ae_title, "destination AE title"))
        if not self.host:
            raise ConfigError("the destination host is empty")
        _check_port(self.port, "the destination port")

    @property
    def name(self) -> str:
        """A stable name for logs and the queue's records (no credentials)."""
        return f"cstore:{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class StowRsDestination:
    """A DICOMweb service that receives the results by STOW-RS (``POST {url}/studies``).

    ``token`` is sent as ``Authorization: Bearer <token>``; ``username``/``password`` as HTTP basic
    authentication. Neither is ever logged.
    """

    url: str
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    verify: bool | str = True

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^/]+", self.url):
            raise ConfigError(f"the STOW-RS URL must start with http:// or https://, got {self.url!r}")
        if self.token and self.username:
            raise ConfigError("give a STOW-RS bearer token or a user name and password, not both")
        if (self.username is None) != (self.password is None):
            raise ConfigError("STOW-RS basic authentication needs both a user name and a password")

    @property
    def name(self) -> str:
        """A stable name for logs and the queue's records: the URL without user information."""
        return "stowrs:" + re.sub(r"//[^/@]*@", "//", self.url.rstrip("/"))


@dataclass(frozen=True)
class NodeConfig:
    """Everything ``thoracic dicom-node`` needs.

    Attributes
    ----------
    spool:
        Folder of the persistent queue: ``queue.sqlite3``, received images (``in/``), results
        waiting to be sent (``out/``). Survives restarts; keep it on a local disk.
    ae_title, host, port:
        Our Application Entity title and where the C-STORE SCP listens.
    allow_ae:
        Calling AE titles allowed to associate; empty allows any.
    queue_size:
        At most this many images are waiting or in work; beyond it C-STORE answers
        ``0xA700`` (out of resources) and the modality retries later.
    destinations:
        Where the results go (at least one): :class:`CStoreDestination` and/or
        :class:`StowRsDestination`.
    workers:
        Images analyzed at the same time.
    max_attempts:
        Tries of a transient failure (a destination down, ...) before a job is marked failed.
    backoff, max_backoff:
        Seconds before the first retry, doubled on each further one up to ``max_backoff``.
    accept_secondary_capture:
        Accept Secondary Capture images whose Modality is CR or DX (digitized films, exports).
    keep_files:
        Keep the received image and the result files of finished jobs (default: deleted once the
        results are delivered; the queue keeps their UIDs).
    """

    spool: Path
    destinations: tuple[CStoreDestination | StowRsDestination, ...]
    ae_title: str = "THORACIC"
    host: str = "0.0.0.0"
    port: int = 11112
    allow_ae: tuple[str, ...] = ()
    queue_size: int = 100
    workers: int = 1
    max_attempts: int = 5
    backoff: float = 5.0
    max_backoff: float = 300.0
    accept_secondary_capture: bool = True
    keep_files: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "spool", Path(self.spool))
        object.__setattr__(self, "ae_title", check_ae_title(self.ae_title))
        object.__setattr__(
            self, "allow_ae", tuple(check_ae_title(t, "allowed AE title") for t in self.allow_ae)
        )
        object.__setattr__(self, "destinations", tuple(self.destinations))
        _check_port(self.port, "the port")
        if not self.destinations:
            raise ConfigError(
                "no destination for the results: give --dest-ae/--dest-host/--dest-port (C-STORE) "
                "and/or --stowrs URL (DICOMweb)"
            )
        names = [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ConfigError("the same destination is given twice")
        if self.queue_size < 1:
            raise ConfigError(f"the queue size must be at least 1, got {self.queue_size}")
        if self.workers < 1:
            raise ConfigError(f"the number of workers must be at least 1, got {self.workers}")
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not 0 <= self.backoff <= self.max_backoff:
            raise ConfigError("the backoff must satisfy 0 <= backoff <= max_backoff")
