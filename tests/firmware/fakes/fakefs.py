"""A filesystem that loses power on cue, with LittleFS semantics (both interpreters).

    disk = Disk()
    fs = FakeFs(disk, cut_at=17)   # the 17th mutating step raises PowerCut
    ...                            # code under test, with fs injected
    fs = fs.remount()              # power back: only durable state remains

Durable state is ``disk.files`` ({path: bytes}) and ``disk.dirs``. Mutating
steps, numbered from 1: create (open for writing a file that does not
exist), write, flush, close, rename, remove, mkdir. The cut happens *instead
of* the step it falls on.

LittleFS model: data written through a handle is volatile until flush() or
close(), which replace the file's durable content in one atomic step (the
copy-on-write commit); a cut before that leaves the old content. Truncation
by 'wb' is volatile the same way. rename and remove are atomic.

``torn=True`` models a weaker filesystem (FAT, a failing flash): a cut that
falls on a flush or close leaves half of the changed bytes written. The queue
must survive that too (CRC and qid checks).
"""


class PowerCut(Exception):
    pass


class Disk:
    def __init__(self):
        self.files = {}
        self.dirs = set()

    def copy(self):
        d = Disk()
        d.files = dict(self.files)
        d.dirs = set(self.dirs)
        return d


def _norm(path):
    while "//" in path:
        path = path.replace("//", "/")
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


def _parent(path):
    i = path.rfind("/")
    if i <= 0:
        return "/" if i == 0 else ""
    return path[:i]


class FakeFile:
    def __init__(self, fs, path, mode):
        self.fs = fs
        self.path = path
        self.mode = mode
        old = fs.disk.files.get(path)
        self.writable = "w" in mode or "a" in mode or "+" in mode
        if "w" in mode:
            self.data = bytearray()
            self.dirty = True
        else:
            self.data = bytearray(old or b"")
            self.dirty = False
        self.pos = len(self.data) if "a" in mode else 0
        self.closed = False

    def _live(self):
        if self.closed:
            raise OSError(9)  # EBADF
        if self.fs.dead:
            raise PowerCut("handle from before the power cut")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self.closed and not self.fs.dead:
            self.close()
        return False

    def read(self, n=-1):
        self._live()
        end = len(self.data) if n is None or n < 0 else min(len(self.data), self.pos + n)
        b = bytes(self.data[self.pos : end])
        self.pos = end
        return b

    def readinto(self, buf):
        self._live()
        n = min(len(buf), len(self.data) - self.pos)
        if n <= 0:
            return 0
        buf[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n

    def seek(self, off, whence=0):
        self._live()
        if whence == 1:
            off += self.pos
        elif whence == 2:
            off += len(self.data)
        self.pos = off
        return off

    def tell(self):
        return self.pos

    def write(self, b):
        self._live()
        if not self.writable:
            raise OSError(9)
        self.fs._step("write", self.path)
        b = bytes(b)
        if "a" in self.mode:
            self.pos = len(self.data)
        end = self.pos + len(b)
        if end > len(self.data):
            self.data.extend(bytes(end - len(self.data)))
        self.data[self.pos : end] = b
        self.pos = end
        self.dirty = True
        return len(b)

    def _commit(self, what):
        fs = self.fs
        old = fs.disk.files.get(self.path, b"")
        new = bytes(self.data)
        try:
            fs._step(what, self.path)
        except PowerCut:
            if fs.torn and self.dirty and new != old:
                # half of the differing bytes reach the disk
                i = 0
                while i < min(len(old), len(new)) and old[i] == new[i]:
                    i += 1
                k = i + (max(len(old), len(new)) - i) // 2
                fs.disk.files[self.path] = new[:k] + old[k:]
            raise
        if self.dirty:
            fs.disk.files[self.path] = new
            self.dirty = False

    def flush(self):
        self._live()
        if self.writable:
            self._commit("flush")

    def close(self):
        if self.closed:
            return
        self._live()
        if self.writable:
            self._commit("close")
        self.closed = True


class FakeFs:
    """The ct_fs.Fs interface over a Disk, with a power cut at step cut_at."""

    def __init__(self, disk=None, cut_at=None, torn=False):
        self.disk = disk if disk is not None else Disk()
        self.cut_at = cut_at
        self.torn = torn
        self.steps = 0
        self.dead = False
        self.trace = []  # (step number, kind, path)

    def _step(self, kind, path):
        if self.dead:
            raise PowerCut("no power")
        self.steps += 1
        self.trace.append((self.steps, kind, path))
        if self.cut_at is not None and self.steps >= self.cut_at:
            self.dead = True
            raise PowerCut(f"{kind} {path} (step {self.steps})")

    def remount(self):
        """Power is back: a new Fs over what reached the disk."""
        self.dead = True
        return FakeFs(self.disk, None, self.torn)

    # --- the ct_fs.Fs interface ----------------------------------------------

    def open(self, path, mode):
        path = _norm(path)
        if self.dead:
            raise PowerCut("no power")
        if _parent(path) not in self.disk.dirs and _parent(path) not in ("", "/"):
            raise OSError(2)  # ENOENT
        if path not in self.disk.files:
            if "r" in mode and "+" not in mode:
                raise OSError(2)
            self._step("create", path)
            self.disk.files[path] = b""
        return FakeFile(self, path, mode)

    def rename(self, a, b):
        a, b = _norm(a), _norm(b)
        if a not in self.disk.files:
            raise OSError(2)
        self._step("rename", b)
        self.disk.files[b] = self.disk.files.pop(a)

    def remove(self, path):
        path = _norm(path)
        if path not in self.disk.files:
            raise OSError(2)
        self._step("remove", path)
        del self.disk.files[path]

    def mkdir(self, path):
        path = _norm(path)
        if path in self.disk.dirs:
            return
        if path in self.disk.files:
            raise OSError(17)
        self._step("mkdir", path)
        self.disk.dirs.add(path)

    def makedirs(self, path):
        cur = "/" if path.startswith("/") else ""
        for part in path.split("/"):
            if part:
                cur += part
                self.mkdir(cur)
                cur += "/"

    def listdir(self, path):
        path = _norm(path)
        if self.dead:
            raise PowerCut("no power")
        if path not in self.disk.dirs:
            raise OSError(2)
        pre = path + "/"
        out = []
        for p in self.disk.files:
            if p.startswith(pre) and "/" not in p[len(pre):]:
                out.append(p[len(pre):])
        for p in self.disk.dirs:
            if p.startswith(pre) and "/" not in p[len(pre):]:
                out.append(p[len(pre):])
        out.sort()
        return out

    def size(self, path):
        path = _norm(path)
        if path in self.disk.files:
            return len(self.disk.files[path])
        if path in self.disk.dirs:
            return 0
        return -1
