"""Helpers for ota.py: build and sign manifests, and a fake gateway that
serves firmware chunks (docs/protocol.md §5.4) through a umqtt-like client."""

import hashlib

import ct_cbor
import ct_p256
import ct_record
from ct_hmac import hmac_sha256

REL = ct_p256.Signer(hashlib.sha256(b"coldtrace test release key").digest())
OTHER = ct_p256.Signer(hashlib.sha256(b"someone else's key").digest())
ACK = bytes(range(32))
DEV = "tl-ota1"


def _h(major, n):
    return ct_cbor.head_bytes(major, n)


def manifest_payload(ver, label, files):
    """{1: ver, 2: label, 3: [[name, size, sha256], ...]} (deterministic)."""
    out = b"\xa3\x01" + _h(0, ver) + b"\x02" + _h(3, len(label)) + label.encode()
    out += b"\x03" + _h(4, len(files))
    for name, data in files:
        out += b"\x83" + _h(3, len(name)) + name.encode() + _h(0, len(data))
        out += b"\x58\x20" + hashlib.sha256(data).digest()
    return out


def manifest(ver, label, files, signer=REL):
    return ct_record.sign1(manifest_payload(ver, label, files), b"release", signer)


def chunk_msg(fields, key=ACK, kid=b"gw-test"):
    buf = bytearray(4096)
    p = bytes(buf[: ct_cbor.encode_map(fields, buf)])
    prot = b"\xa2\x01\x05\x04" + _h(2, len(kid)) + kid
    tag = hmac_sha256(key, b"\x84\x64MAC0", _h(2, len(prot)), prot, b"\x40", _h(2, len(p)), p)
    return b"\xd1\x84" + _h(2, len(prot)) + prot + b"\xa0" + _h(2, len(p)) + p + b"\x58\x20" + tag


class Release:
    def __init__(self, ver, label, files, signer=REL):
        self.ver = ver
        self.files = files
        self.cose = manifest(ver, label, files, signer)
        self.hash = hashlib.sha256(self.cose).digest()

    def offer(self):
        return {1: 1, 2: 0, 20: self.ver, 21: self.hash, 22: len(self.cose)}

    def blob(self, idx):
        return self.cose if idx == 0 else self.files[idx - 1][1]


class FwServer:
    """Answers chunk requests from the release it holds; ``tamper`` maps a
    file index to bytes served instead; ``forge`` sends one bad MAC first."""

    def __init__(self, release, key=ACK):
        self.release = release
        self.key = key
        self.tamper = {}
        self.forge = 0
        self.requests = 0
        self.down = False


class FwClient:
    def __init__(self, server):
        self.s = server
        self.cb = None
        self.out = []

    def set_callback(self, f):
        self.cb = f

    def connect(self, clean=False, timeout=None):
        if self.s.down:
            raise OSError(113, "down")

    def subscribe(self, t, q=0):
        self.topic = t

    def disconnect(self):
        pass

    def publish(self, topic, msg, retain=False, qos=0):
        if self.s.down:
            raise OSError(104, "down")
        s = self.s
        s.requests += 1
        f = ct_cbor.decode_map(msg)
        data = s.tamper.get(f[2], s.release.blob(f[2]))[f[3] : f[3] + f[4]]
        if s.forge:
            s.forge -= 1
            self.out.append(chunk_msg({1: f[1], 2: f[2], 3: f[3], 4: data}, bytes(32)))
        self.out.append(chunk_msg({1: f[1], 2: f[2], 3: f[3], 4: data}, s.key))

    def check_msg(self):
        if self.out:
            self.cb(self.topic, self.out.pop(0))
            return 0x30
        return None
