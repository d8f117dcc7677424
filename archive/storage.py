"""Blob storage of received DICOM files, byte-exact, under keys the server makes.

The ``Storage`` protocol is what the rest of the archive uses, so an object store can be added beside
``LocalStorage``. Keys are random 128-bit names minted per stored version (``new_key``), never derived
from request text; a replaced instance gets a new key, so anything keyed on it (caches, ETags) can
never serve the old content. Writes are
atomic: a temporary file in the same file system, optionally fsync'ed, then renamed into place, so a
crash never leaves a half-written blob under its final name. Must not know DICOM or the index.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from archive.errors import ArchiveError, NotFound

log = logging.getLogger(__name__)
_KEY_RE = re.compile(r"^[0-9a-f]{32}$")


def new_key() -> str:
    """A fresh storage key: 128 random bits in hex (no hashing on the ingest path)."""
    return os.urandom(16).hex()


def derived_key(key: str, purpose: str) -> str:
    """The key of a blob that belongs to the stored version ``key`` (e.g. its rendition).

    Derived, not random: whoever deletes the original can delete it without asking the index, and a
    transcode redone after a crash overwrites its own left-over instead of leaving a second orphan.
    """
    return hashlib.blake2b(f"{purpose}:{key}".encode(), digest_size=16).hexdigest()


class Storage(Protocol):
    #: Reads are copies from a local file system's page cache: a CPU-pool thread may do them itself.
    local_reads: bool

    def put_many(self, blobs: list[tuple[str, bytes]], *, durable: bool) -> None:
        """Store each (key, data) atomically; with ``durable`` the data and names are on disk on return."""

    def stage(self, blobs: list[bytes], *, durable: bool) -> list[Path]:
        """Write blobs to local temporary files (readable by a parser process); not stored yet."""

    def commit(self, staged: list[tuple[str, Path]], *, durable: bool) -> None:
        """Store staged files under their keys, atomically."""

    def discard(self, staged: list[Path]) -> None:
        """Remove staged files that were not committed."""

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``; raises NotFound."""

    def read_all(self, key: str) -> bytes:
        """The whole blob; raises NotFound."""

    def same_content(self, key: str, data: bytes) -> bool:
        """Whether the stored blob holds exactly ``data``."""

    def delete(self, key: str) -> None:
        """Remove the blob; a missing blob is not an error."""


class LocalStorage:
    """Blobs as files under ``root/objects/ab/<key>``; temporary files under ``root/tmp``.

    The 256 fan-out folders are made once at start-up, so a write never has to create one.
    """

    local_reads = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.tmp = self.root / "tmp"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        for i in range(256):
            (self.objects / f"{i:02x}").mkdir(exist_ok=True)
        self._clean_tmp()

    def _clean_tmp(self) -> None:
        # Left-overs of a crash mid-write are never referenced by the index. Temporary names start
        # with the writer's pid: files of a live process (another --workers process already serving
        # while this one starts) are left alone.
        for leftover in self.tmp.iterdir():
            owner = leftover.name.split(".", 1)[0]
            if owner.isdigit() and int(owner) != os.getpid() and _alive(int(owner)):
                continue
            try:
                leftover.unlink()
            except OSError:
                log.warning("could not remove temporary file %s", leftover)

    def path(self, key: str) -> Path:
        if not _KEY_RE.match(key):
            raise ArchiveError(f"invalid storage key {key!r}")
        return self.objects / key[:2] / key

    def put_many(self, blobs: list[tuple[str, bytes]], *, durable: bool) -> None:
        staged = self.stage([data for _key, data in blobs], durable=durable)
        try:
            self.commit([(key, path) for (key, _data), path in zip(blobs, staged, strict=True)], durable=durable)
        finally:
            self.discard(staged)

    def stage(self, blobs: list[bytes], *, durable: bool) -> list[Path]:
        """Write each blob to a temporary file of its own (fsynced with ``durable``), where a parser in
        another process can read it; nothing is stored until ``commit``. On error the files written
        so far are removed and the error raised."""
        staged: list[Path] = []
        try:
            for data in blobs:
                fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix=f"{os.getpid()}.")
                staged.append(Path(tmp_name))
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    if durable:
                        fh.flush()
                        os.fsync(fh.fileno())
        except BaseException:
            self.discard(staged)
            raise
        return staged

    def commit(self, staged: list[tuple[str, Path]], *, durable: bool) -> None:
        """Move staged files to their keys (atomic renames); with ``durable`` the names are on disk
        on return."""
        dirs: set[Path] = set()
        for key, tmp_path in staged:
            final = self.path(key)
            os.replace(tmp_path, final)
            dirs.add(final.parent)
        if durable:
            for d in dirs:
                _fsync_dir(d)

    def discard(self, staged: list[Path]) -> None:
        """Remove staged files not committed (a committed one is gone from the temporary folder)."""
        for tmp_path in staged:
            tmp_path.unlink(missing_ok=True)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            fd = os.open(self.path(key), os.O_RDONLY)
        except FileNotFoundError:
            raise NotFound(f"blob {key} is missing from storage") from None
        try:
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        if len(data) != length:
            raise ArchiveError(f"blob {key} is shorter than expected ({offset}+{length})")
        return data

    def read_all(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {key} is missing from storage") from None

    def same_content(self, key: str, data: bytes) -> bool:
        """Whether the stored blob holds exactly ``data`` (size first, then the bytes)."""
        try:
            if self.path(key).stat().st_size != len(data):
                return False
        except FileNotFoundError:
            return False
        return self.read_all(key) == data

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
