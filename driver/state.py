"""What a restarted driver needs to carry on, kept beside each container's journal.

The daemon sends StartLogging once per container; a plugin that dies and comes back (Docker
restarts a managed plugin whose process was killed) gets no second call and must reopen the
FIFOs it knew, and journaled lines must still reach their stream after their container is gone.
So each journal directory holds:

- ``meta``: where its lines go: container id, log-opts, the member once known, the few Info
  fields a message may show, and format=json's fixed fields (its tag, and the labels and env
  variables the log-opts ``labels``/``env`` chose). Never the container's environment (it
  holds passwords).
- ``fifo``: the FIFO's path, only while the container runs: removed at StopLogging, so no
  resume record outlives it.

Files are 0600 in 0700 directories, written to a temporary name and renamed (atomic).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import msgpack

from .files import REAL, Files
from .journal import JournalVersionError
from .limits import JOURNAL_VERSION

log = logging.getLogger(__name__)

META = "meta"
FIFO = "fifo"
# Info fields worth keeping (they name the container; none carries a secret).
INFO_KEPT = ("ContainerID", "ContainerName", "ContainerImageName", "ContainerImageID",
             "DaemonName")  # fmt: skip


class RecordError(ValueError):
    """A meta file that cannot be read."""


@dataclass
class Record:
    """A journal's destination and the container it came from."""

    container_id: str
    opts: dict[str, str]
    stream: str | None = None
    info: dict[str, str] = field(default_factory=dict)
    fields: dict = field(default_factory=dict)  # format=json's fixed fields (formats.py)
    started: float = 0.0  # time.time() at StartLogging: orders a container's runs for `docker logs`
    # The format it was written in, kept when a newer driver rewrites it: a rollback to the
    # driver that wrote it must still read it.
    version: int = JOURNAL_VERSION


def record_of(info: dict) -> Record:
    """The record of a StartLogging request's Info: no environment, no labels."""
    kept = {k: info[k] for k in INFO_KEPT if isinstance(info.get(k), str)}
    return Record(
        container_id=str(info.get("ContainerID") or "unknown"),
        opts={str(k): str(v) for k, v in (info.get("Config") or {}).items()},
        info=kept,
    )


def save(directory: str, rec: Record, files: Files = REAL) -> None:
    """Write ``meta`` (raises OSError)."""
    body = {"v": rec.version, "container_id": rec.container_id, "opts": rec.opts,
            "stream": rec.stream, "info": rec.info, "fields": rec.fields,
            "started": rec.started}  # fmt: skip
    # On the disk before it counts: a journal whose record a power cut lost cannot be shipped.
    files.replace(os.path.join(directory, META), msgpack.packb(body), sync=True)


def load(directory: str, files: Files = REAL) -> Record:
    """Read ``meta`` (raises OSError, RecordError, JournalVersionError)."""
    raw = files.read_all(os.path.join(directory, META))
    try:
        body = msgpack.unpackb(raw)
        version = body["v"]
        if version > JOURNAL_VERSION:
            raise JournalVersionError(
                f"{directory} was written by a newer driver (format v{version}; this one reads "
                f"up to v{JOURNAL_VERSION}); left as it is"
            )
        return Record(body["container_id"], dict(body["opts"]), body.get("stream"),
                      dict(body.get("info") or {}), dict(body.get("fields") or {}),
                      float(body.get("started") or 0.0), int(version))  # fmt: skip
    except (ValueError, KeyError, TypeError, msgpack.UnpackException) as e:
        raise RecordError(f"unreadable {directory}/{META}: {e!r}") from None


def save_fifo(directory: str, fifo: str, files: Files = REAL) -> None:
    files.replace(os.path.join(directory, FIFO), fifo.encode())


def load_fifo(directory: str, files: Files = REAL) -> str | None:
    """The FIFO's path, or None when there is none to reopen (also when the record holds
    something that is no path: the container's journal then ships as a stopped one's)."""
    try:
        raw = files.read_all(os.path.join(directory, FIFO), 4096)
    except FileNotFoundError:
        return None
    try:
        path = raw.decode()
    except UnicodeDecodeError:
        path = ""
    if not path.startswith("/") or "\0" in path:
        if raw:
            log.warning("%s/%s holds no FIFO path; the container counts as stopped",
                        directory, FIFO)  # fmt: skip
        return None
    return path


def drop_fifo(directory: str, files: Files = REAL) -> None:
    """StopLogging: the container will not be resumed."""
    try:
        files.unlink(os.path.join(directory, FIFO))
    except FileNotFoundError:
        pass
    except OSError as e:  # read-only, say: its FIFO is gone anyway, a restart finds none
        log.warning("%s/%s: %s", directory, FIFO, e)
