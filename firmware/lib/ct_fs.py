"""The filesystem calls ct_state and ct_queue make, behind one small object,
so tests can inject a filesystem that loses power (tests/firmware/fakes).

    fs = Fs()                 # the interpreter's own: open + os
    fs.open(path, mode)       # 'rb', 'wb', 'ab', 'r+b'
    fs.rename(a, b)           # atomic replace on LittleFS (and POSIX)
    fs.remove(path); fs.mkdir(path); fs.listdir(path)
    fs.size(path)             # bytes, or -1 when the file does not exist

LittleFS (the ESP32 default) commits a file's new content at flush/close and
keeps the old content after a power cut before that; rename is atomic.
"""

import os


class FsError(OSError):
    pass


class Fs:
    def open(self, path, mode):
        return open(path, mode)

    def rename(self, a, b):
        os.rename(a, b)

    def remove(self, path):
        os.remove(path)

    def mkdir(self, path):
        try:
            os.mkdir(path)
        except OSError:
            if self.size(path) < 0:
                raise

    def listdir(self, path):
        return os.listdir(path)

    def size(self, path):
        try:
            return os.stat(path)[6]
        except OSError:
            return -1

    def makedirs(self, path):
        cur = "/" if path.startswith("/") else ""
        for part in path.split("/"):
            if part:
                cur += part
                self.mkdir(cur)
                cur += "/"
