"""Where a log keeps its hashes: complete subtrees, addressed by (level, index).

A ``NodeStore`` holds, for each level, the hashes of the complete subtrees of
that level in index order: level 0 holds leaf hashes, level ``L`` index ``i``
holds MTH of leaves ``[i << L, (i + 1) << L)``. A node is written once, when
its last leaf arrives, and never changes. With ``size`` leaves, level ``L``
holds ``size >> L`` nodes, about ``2 * size`` hashes in all, and any root or
proof of any tree size up to ``size`` needs O(log size) reads
(``protocol.merkle.proof``).

The store is deliberately dumb: it does no hashing and knows nothing of tree
sizes. ``MerkleTree`` keeps the levels consistent and repairs them after a
crash. The contract for an implementation (the gateway adds a SQLite one):

- ``count(level)``: number of nodes at ``level`` (0 for a level never used);
- ``get(level, index)``: the hash, or ``IndexError`` if ``index`` is not in
  ``[0, count(level))``;
- ``append(level, h)``: store ``h`` as node ``count(level)`` of ``level``;
- ``truncate(level, count)``: drop the nodes of ``level`` from index
  ``count`` on (nothing if there are not more);
- ``flush()``: make every append and truncate so far durable. Until then a
  crash may lose any suffix of any level, each level independently, but must
  never reorder or alter what it keeps.

Reads must see every append and truncate at once, flushed or not. A store
serves one writer; it is not thread-safe.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from types import TracebackType
from typing import Protocol

from protocol.merkle.hasher import HASH_SIZE

__all__ = ["FileNodeStore", "MemoryNodeStore", "NodeStore"]


class NodeStore(Protocol):
    """Hashes of complete subtrees by (level, index); see the module docstring."""

    def count(self, level: int) -> int:
        """Number of nodes stored at ``level``."""
        ...

    def get(self, level: int, index: int) -> bytes:
        """The hash of node ``index`` at ``level``; ``IndexError`` if absent."""
        ...

    def append(self, level: int, h: bytes) -> None:
        """Store ``h`` as the next node of ``level``."""
        ...

    def truncate(self, level: int, count: int) -> None:
        """Keep only the first ``count`` nodes of ``level``."""
        ...

    def flush(self) -> None:
        """Make all changes so far durable."""
        ...


def _check_hash(h: bytes) -> None:
    if len(h) != HASH_SIZE:
        raise ValueError(f"a node hash has {HASH_SIZE} bytes, got {len(h)}")


class MemoryNodeStore:
    """All nodes in lists in memory: about 2 x 32 bytes (plus object overhead) per leaf."""

    def __init__(self) -> None:
        self._levels: list[list[bytes]] = []

    def count(self, level: int) -> int:
        return len(self._levels[level]) if level < len(self._levels) else 0

    def get(self, level: int, index: int) -> bytes:
        if index < 0 or level >= len(self._levels):
            raise IndexError(f"no node ({level}, {index})")
        return self._levels[level][index]

    def append(self, level: int, h: bytes) -> None:
        if len(h) != HASH_SIZE:
            _check_hash(h)
        if type(h) is not bytes:
            h = bytes(h)  # never keep a buffer the caller may change
        levels = self._levels
        while level >= len(levels):
            levels.append([])
        levels[level].append(h)

    def truncate(self, level: int, count: int) -> None:
        if level < len(self._levels):
            del self._levels[level][max(count, 0) :]

    def flush(self) -> None:
        pass


_LEVEL_FILE = re.compile(r"level-(\d{2})\.hashes")


class FileNodeStore:
    """One append-only file of 32-byte hashes per level, in ``directory``.

    Files are ``level-00.hashes`` (leaf hashes), ``level-01.hashes``, ...;
    node ``i`` of a level is at byte offset ``32 * i`` of its file. Appends
    are buffered, at most ``buffer_nodes`` hashes per level (so memory stays
    bounded), and written when a buffer fills or on ``flush()``, which also
    fsyncs the files (and the directory when a file was created). Reads use ``pread``: the store
    keeps no hashes in memory beyond the buffers, the OS page cache does
    the caching.

    On open, a file whose length is not a multiple of 32 (a write torn by a
    crash) is cut back to its last whole hash; ``torn`` reports how many
    bytes were cut per level. A lock file stops a second process from
    opening the same directory. Call ``close()`` (or use ``with``) when done.
    POSIX only (``pread``/``pwrite``, ``flock``).
    """

    def __init__(self, directory: str | os.PathLike[str], *, buffer_nodes: int = 1024) -> None:
        if buffer_nodes < 1:
            raise ValueError("buffer_nodes must be at least 1")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._buffer_bytes = buffer_nodes * HASH_SIZE
        self._fds: list[int] = []
        self._written: list[int] = []  # nodes on disk (written, maybe not yet fsynced)
        self._pending: list[bytearray] = []  # appended, not yet written
        self._unsynced: set[int] = set()
        self._dir_unsynced = False
        self._closed = False
        self.torn: dict[int, int] = {}
        """Bytes cut from each level's file on open (torn partial tail)."""
        self._lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._lock()
            self._open_existing()
        except BaseException:
            self._close_fds()
            raise

    def _lock(self) -> None:
        if sys.platform != "win32":
            import fcntl

            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RuntimeError(f"{self.directory} is in use by another FileNodeStore") from None

    def _open_existing(self) -> None:
        levels = sorted(
            int(m.group(1))
            for p in self.directory.iterdir()
            if (m := _LEVEL_FILE.fullmatch(p.name)) is not None
        )
        for level in levels:
            fd = self._open_level(level)
            length = os.fstat(fd).st_size
            tail = length % HASH_SIZE
            if tail:
                os.ftruncate(fd, length - tail)
                os.fsync(fd)
                self.torn[level] = tail
            self._written[level] = length // HASH_SIZE

    def _path(self, level: int) -> Path:
        return self.directory / f"level-{level:02d}.hashes"

    def _open_level(self, level: int) -> int:
        if self._closed:
            raise ValueError("FileNodeStore is closed")
        if not 0 <= level < 100:
            raise ValueError(f"level {level} is out of range")
        while level >= len(self._fds):
            path = self._path(len(self._fds))
            if not path.exists():
                self._dir_unsynced = True
            self._fds.append(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
            self._written.append(0)
            self._pending.append(bytearray())
        return self._fds[level]

    def count(self, level: int) -> int:
        if level >= len(self._fds):
            return 0
        return self._written[level] + len(self._pending[level]) // HASH_SIZE

    def get(self, level: int, index: int) -> bytes:
        if index < 0 or level >= len(self._fds):
            if self._closed:
                raise ValueError("FileNodeStore is closed")
            raise IndexError(f"no node ({level}, {index})")
        written = self._written[level]
        if index < written:
            h = os.pread(self._fds[level], HASH_SIZE, index * HASH_SIZE)
            if len(h) != HASH_SIZE:
                raise OSError(f"{self._path(level)} is shorter than expected")
            return h
        start = (index - written) * HASH_SIZE
        pending = self._pending[level]
        if start + HASH_SIZE > len(pending):
            raise IndexError(f"no node ({level}, {index})")
        return bytes(pending[start : start + HASH_SIZE])

    def append(self, level: int, h: bytes) -> None:
        if len(h) != HASH_SIZE:
            _check_hash(h)
        if level >= len(self._pending):
            self._open_level(level)
        pending = self._pending[level]
        pending += h
        if len(pending) >= self._buffer_bytes:
            self._write(level)

    def _write(self, level: int) -> None:
        pending = self._pending[level]
        if not pending:
            return
        fd = self._fds[level]
        offset = self._written[level] * HASH_SIZE
        with memoryview(pending) as view:
            done = 0
            while done < len(view):
                done += os.pwrite(fd, view[done:], offset + done)
        self._written[level] += len(pending) // HASH_SIZE
        pending.clear()
        self._unsynced.add(level)

    def truncate(self, level: int, count: int) -> None:
        count = max(count, 0)
        if level >= len(self._fds) or count >= self.count(level):
            return
        written = self._written[level]
        if count >= written:
            del self._pending[level][(count - written) * HASH_SIZE :]
            return
        self._pending[level].clear()
        os.ftruncate(self._fds[level], count * HASH_SIZE)
        self._written[level] = count
        self._unsynced.add(level)

    def flush(self) -> None:
        if self._closed:
            raise ValueError("FileNodeStore is closed")
        for level in range(len(self._fds)):
            self._write(level)
        for level in sorted(self._unsynced):
            os.fsync(self._fds[level])
        self._unsynced.clear()
        if self._dir_unsynced and sys.platform != "win32":
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._dir_unsynced = False

    def close(self) -> None:
        """Flush, release the lock and close the files. Safe to call twice."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._close_fds()

    def _close_fds(self) -> None:
        self._closed = True
        for fd in self._fds:
            os.close(fd)
        self._fds, self._written, self._pending = [], [], []
        os.close(self._lock_fd)  # closing the descriptor releases the flock

    def __enter__(self) -> FileNodeStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
