"""Keys: P-256 device and registry keys, Ed25519 log and ledger keys, base64.

- P-256 public keys travel as SEC1 uncompressed points, 65 bytes
  ``04 ‖ X ‖ Y`` (docs/protocol.md §2.5 field ``key``, §10 trust file).
  Loading one checks the length, the prefix and that the point is on the
  curve; a bad key raises :class:`~protocol.errors.KeyTrustError`.
- Ed25519 public keys are the raw 32 bytes (RFC 8032).
- Private keys are stored as unencrypted PKCS#8 PEM files with mode 0600.
  Loading refuses a file that group or others can read, unless the caller
  says ``unsafe_allow_open_mode=True``. Nothing here prints, logs or puts a
  private key into an error message.
- :func:`b64e` / :func:`b64d`: standard base64 with padding (RFC 4648 §4),
  the encoding every base64 field of the protocol uses (§9, §10). Decoding is
  strict: no whitespace, no URL-safe alphabet, no missing padding, no
  non-zero pad bits.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from protocol.errors import KeyTrustError

__all__ = [
    "P256_SEC1_LEN",
    "b64d",
    "b64e",
    "ed25519_private_from_raw",
    "ed25519_public_from_raw",
    "ed25519_public_to_raw",
    "generate_ed25519",
    "generate_p256",
    "load_ed25519_private_key",
    "load_p256_private_key",
    "p256_private_from_scalar",
    "p256_private_scalar",
    "p256_public_from_sec1",
    "p256_public_to_sec1",
    "save_private_key",
]

#: Length of an uncompressed SEC1 P-256 point: 0x04 ‖ X(32) ‖ Y(32).
P256_SEC1_LEN = 65

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


# --- base64 ----------------------------------------------------------------------


def b64e(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648 §4)."""
    return base64.b64encode(data).decode("ascii")


def b64d(text: str | bytes, *, error: type[Exception] = ValueError) -> bytes:
    """Decode strict standard base64 with padding; raise ``error`` otherwise.

    Refuses characters outside the standard alphabet (including whitespace and
    the URL-safe ``-_``), a length that is not a multiple of 4, and encodings
    that are not canonical (non-zero bits in the last character before the
    padding), so that each byte string has exactly one accepted text.
    ``error`` lets callers get their domain's error class (called with one
    message argument).
    """
    if isinstance(text, str):
        try:
            raw_text = text.encode("ascii")
        except UnicodeEncodeError:
            raise error("base64: non-ASCII character") from None
    else:
        raw_text = bytes(text)
    if len(raw_text) % 4:
        raise error(f"base64: length {len(raw_text)} is not a multiple of 4")
    try:
        data = base64.b64decode(raw_text, validate=True)
    except binascii.Error:
        raise error("base64: not standard base64 with padding") from None
    if base64.b64encode(data) != raw_text:
        raise error("base64: non-canonical encoding (non-zero pad bits)")
    return data


# --- P-256 -----------------------------------------------------------------------


def generate_p256() -> ec.EllipticCurvePrivateKey:
    """A new random P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def p256_private_from_scalar(x: int) -> ec.EllipticCurvePrivateKey:
    """The P-256 private key with scalar ``x`` (1 ≤ x < n); for test vectors."""
    return ec.derive_private_key(x, ec.SECP256R1())


def p256_private_scalar(key: ec.EllipticCurvePrivateKey) -> int:
    """The private scalar of a P-256 key (what RFC 6979 signing needs)."""
    _require_p256(key.curve)
    return key.private_numbers().private_value


def p256_public_from_sec1(data: bytes) -> ec.EllipticCurvePublicKey:
    """Load a P-256 public key from its 65-byte uncompressed SEC1 encoding.

    Raises KeyTrustError for a wrong length or prefix (compressed points are
    refused: the protocol has one encoding per key) or a point not on P-256.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise KeyTrustError(
            "P-256 public key must be bytes", expected="bytes", found=type(data).__name__
        )
    if len(data) != P256_SEC1_LEN:
        raise KeyTrustError(
            "P-256 public key has the wrong length",
            expected=f"{P256_SEC1_LEN} bytes (SEC1 uncompressed)",
            found=f"{len(data)} bytes",
        )
    if data[0] != 0x04:
        raise KeyTrustError(
            "P-256 public key is not an uncompressed SEC1 point",
            expected="prefix 0x04",
            found=f"prefix 0x{data[0]:02x}",
        )
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(data))
    except ValueError:
        raise KeyTrustError(
            "P-256 public key is not a point on the curve", expected="a P-256 point"
        ) from None


def p256_public_to_sec1(key: ec.EllipticCurvePublicKey) -> bytes:
    """The 65-byte uncompressed SEC1 encoding of a P-256 public key."""
    _require_p256(key.curve)
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _require_p256(curve: ec.EllipticCurve) -> None:
    if not isinstance(curve, ec.SECP256R1):
        raise KeyTrustError("key is not on P-256", expected="secp256r1", found=curve.name)


# --- Ed25519 ---------------------------------------------------------------------


def generate_ed25519() -> ed25519.Ed25519PrivateKey:
    """A new random Ed25519 private key."""
    return ed25519.Ed25519PrivateKey.generate()


def ed25519_public_from_raw(data: bytes) -> ed25519.Ed25519PublicKey:
    """Load an Ed25519 public key from its 32 raw bytes (RFC 8032 §5.1.5)."""
    if not isinstance(data, (bytes, bytearray)) or len(data) != 32:
        found = f"{len(data)} bytes" if isinstance(data, (bytes, bytearray)) else type(data)
        raise KeyTrustError("Ed25519 public key has the wrong length", expected=32, found=found)
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(bytes(data))
    except ValueError:
        raise KeyTrustError("not an Ed25519 public key") from None


def ed25519_public_to_raw(key: ed25519.Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def ed25519_private_from_raw(data: bytes) -> ed25519.Ed25519PrivateKey:
    """Load an Ed25519 private key from its 32-byte seed."""
    if len(data) != 32:
        raise KeyTrustError("Ed25519 private key has the wrong length", expected=32)
    return ed25519.Ed25519PrivateKey.from_private_bytes(bytes(data))


# --- private key files -------------------------------------------------------------


def save_private_key(key: PrivateKey, path: str | Path) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM to ``path`` with mode 0600.

    The file is created with mode 0600 from the start (never world-readable,
    not even briefly), written to a temporary name and renamed into place, so
    a crash leaves either the old file or the new one.
    """
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        raise TypeError(f"want a P-256 or Ed25519 private key, got {type(key).__name__}")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        _require_p256(key.curve)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)  # in case a umask or ACL widened it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _load_private(path: str | Path, unsafe_allow_open_mode: bool) -> object:
    path = Path(path)
    st = path.stat()
    if not unsafe_allow_open_mode and stat.S_IMODE(st.st_mode) & 0o077:
        raise PermissionError(
            f"private key file {path} is readable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it"
        )
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        # Never echo the file's content: it is a private key.
        raise KeyTrustError(f"{path} is not an unencrypted PEM private key") from None


def load_p256_private_key(
    path: str | Path, *, unsafe_allow_open_mode: bool = False
) -> ec.EllipticCurvePrivateKey:
    """Load a P-256 private key written by :func:`save_private_key`."""
    key = _load_private(path, unsafe_allow_open_mode)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyTrustError(f"{path} does not hold a P-256 private key")
    _require_p256(key.curve)
    return key


def load_ed25519_private_key(
    path: str | Path, *, unsafe_allow_open_mode: bool = False
) -> ed25519.Ed25519PrivateKey:
    """Load an Ed25519 private key written by :func:`save_private_key`."""
    key = _load_private(path, unsafe_allow_open_mode)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyTrustError(f"{path} does not hold an Ed25519 private key")
    return key
