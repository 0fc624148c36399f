"""Every file operation of the journal and its records, through one object.

The journal's promise rests on what the disk does when things go wrong: writes that fail (EIO,
EROFS after a read-only remount, ENOSPC or EDQUOT), writes that are torn or lost by a power cut,
files that hold garbage. ``Files`` is the real thing (os calls, nothing added); tests give the
journal a subclass that injects those faults on any call and simulates a power cut, so every
recovery path runs in-process, on real files and pipes.
"""

from __future__ import annotations

import ctypes
import os
import shutil

_FALLOC_PUNCH = 0x01 | 0x02  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _fallocate = _libc.fallocate
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
except (OSError, AttributeError):  # not glibc: dropped data stays on disk until its file goes
    _fallocate = None


class Files:
    """The operations, as the os module has them (each raises OSError)."""

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, mode=0o700, exist_ok=True)

    def size(self, path: str) -> int:
        return os.stat(path).st_size

    def mtime(self, path: str) -> float:
        return os.stat(path).st_mtime

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def open_write(self, path: str) -> int:
        """A descriptor to write ``path`` at offsets of the caller's choosing (created 0600)."""
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def close(self, fd: int) -> None:
        os.close(fd)

    def splice(self, fifo_fd: int, fd: int, count: int, offset: int) -> int:
        """Move up to ``count`` bytes from the pipe to ``fd`` at ``offset`` (non-blocking)."""
        return os.splice(fifo_fd, fd, count, offset_dst=offset, flags=os.SPLICE_F_NONBLOCK)

    def pread(self, path: str, offset: int, count: int) -> bytes:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(fd, count, offset)
        finally:
            os.close(fd)

    def read_all(self, path: str, limit: int = 1 << 20) -> bytes:
        return self.pread(path, 0, limit)

    def pwrite(self, path: str, data: bytes, offset: int, sync: bool = False) -> None:
        """Write ``data`` in place at ``offset`` (creating the file 0600), all of it or raise;
        ``sync``: on the disk before returning (fdatasync)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                n = os.pwrite(fd, view, offset)
                view, offset = view[n:], offset + n
            if sync:
                os.fdatasync(fd)
        finally:
            os.close(fd)

    def replace(self, path: str, data: bytes, sync: bool = False) -> None:
        """Give ``path`` the content ``data`` atomically (a temporary file renamed over it):
        after a crash it holds the old content or the new, never a mix. ``sync``: the new
        content and the rename are on the disk before returning."""
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if sync:
            self.sync_dir(os.path.dirname(path))

    def sync_file(self, path: str) -> None:
        """Whatever was written to ``path`` is on the disk (fdatasync)."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def sync_dir(self, path: str) -> None:
        """Files created, renamed or deleted in ``path`` stay so after a power cut."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def rmtree(self, path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def punch(self, path: str, length: int) -> None:
        """Free the disk blocks of the first ``length`` bytes of ``path`` (a no-op where the
        file system cannot)."""
        if _fallocate is None or length <= 0:
            return
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            _fallocate(fd, _FALLOC_PUNCH, 0, length)
        finally:
            os.close(fd)


REAL = Files()
