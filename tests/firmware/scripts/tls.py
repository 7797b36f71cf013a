"""ct_tls with a fake ``ssl`` module: what reaches the SSLContext under each
interpreter (MicroPython: the files' bytes; CPython: the paths), the server
name, CERT_REQUIRED, and where timeouts go. The handshake itself needs real
sockets: tests/firmware/test_tls_uplink.py (CPython, real Mosquitto)."""

import ct_tls
from fwrun import main, raises

_DIR = f"/tmp/cttls{id(object())}"
CA = _DIR + "-ca.pem"
CERT = _DIR + "-dev.pem"
KEY = _DIR + "-dev.key"


def _files():
    for p, d in ((CA, b"-----BEGIN CERTIFICATE-----\nCA\n"),
                 (CERT, b"-----BEGIN CERTIFICATE-----\nDEV\n"),
                 (KEY, b"-----BEGIN EC PRIVATE KEY-----\nK\n")):
        with open(p, "wb") as f:
            f.write(d)


class RawSock:
    def __init__(self):
        self.timeouts = []

    def settimeout(self, t):
        self.timeouts.append(t)

    def setblocking(self, flag):
        self.timeouts.append(None if flag else 0)


class MpTlsSock:
    """MicroPython's SSLSocket: read/write/setblocking/close, no settimeout."""

    def __init__(self, raw):
        self.raw = raw
        self.written = []

    def setblocking(self, flag):
        self.raw.setblocking(flag)

    def read(self, n):
        return b"x" * n

    def write(self, b):
        self.written.append(bytes(b))
        return len(b)

    def close(self):
        pass


class FakeContext:
    def __init__(self, proto, positional_only):
        self.proto = proto
        self.calls = []
        self.verify_mode = 0
        self._pos = positional_only

    def load_verify_locations(self, *a, **kw):
        if self._pos and kw:
            raise TypeError("function doesn't take keyword arguments")  # 1.22's C module
        self.calls.append(("ca", a, kw))

    def load_cert_chain(self, cert, key):
        self.calls.append(("cert", cert, key))

    def wrap_socket(self, sock, server_hostname=None):
        self.calls.append(("wrap", server_hostname))
        return MpTlsSock(sock)


class FakeSsl:
    PROTOCOL_TLS_CLIENT = 16
    CERT_REQUIRED = 2

    def __init__(self, positional_only=False):
        self.pos = positional_only
        self.ctx = None

    def SSLContext(self, proto):
        self.ctx = FakeContext(proto, self.pos)
        return self.ctx


def test_context_loads_ca_and_client_certificate_and_requires_verification():
    _files()
    for pos in (False, True) if ct_tls._MP else (False,):  # 1.22: positional only
        ssl = FakeSsl(pos)
        c = ct_tls.Context({"ca": CA, "cert": CERT, "key": KEY}, "broker.test", ssl)
        ctx = ssl.ctx
        assert ctx.proto == 16 and ctx.verify_mode == 2
        ca = next(x for x in ctx.calls if x[0] == "ca")
        cert = next(x for x in ctx.calls if x[0] == "cert")
        if ct_tls._MP:
            data = b"-----BEGIN CERTIFICATE-----\nCA\n"
            assert ca[1] == (data,) if pos else ca[2] == {"cadata": data}
            assert cert[1] == b"-----BEGIN CERTIFICATE-----\nDEV\n"
            assert cert[2] == b"-----BEGIN EC PRIVATE KEY-----\nK\n"
        else:
            assert ca[2] == {"cafile": CA}
            assert cert[1:] == (CERT, KEY)
        assert c.name == "broker.test"


def test_wrap_uses_the_configured_server_name_not_the_address():
    _files()
    ssl = FakeSsl()
    c = ct_tls.Context({"ca": CA, "cert": CERT, "key": KEY, "server_name": "broker.test"},
                       "10.0.7.2", ssl)
    raw = RawSock()
    s = c.wrap_socket(raw, server_hostname="10.0.7.2")  # what umqtt.simple passes
    assert ssl.ctx.calls[-1] == ("wrap", "broker.test")
    # MicroPython's TLS socket has no settimeout: timeouts go to the raw socket
    s.settimeout(5)
    s.setblocking(True)
    assert raw.timeouts == [5, None]
    assert s.read(3) == b"xxx"
    s.write(b"abcdef", 4)
    assert ssl.ctx.calls[-1][0] == "wrap" and s._s.written == [b"abcd"]


def test_missing_or_half_configuration_is_refused_with_the_key_named():
    _files()
    e = raises(ct_tls.TLSError, ct_tls.Context, {"cert": CERT, "key": KEY}, "h", FakeSsl())
    assert "ca" in str(e)
    e = raises(ct_tls.TLSError, ct_tls.Context, {"ca": CA, "key": KEY}, "h", FakeSsl())
    assert "both" in str(e)
    if ct_tls._MP:  # the files are read on the board
        e = raises(ct_tls.TLSError, ct_tls.Context, {"ca": _DIR + "-none"}, "h", FakeSsl())
        assert "cannot read" in str(e)


def test_a_client_that_ignores_the_context_is_refused():
    _files()
    c = ct_tls.Context({"ca": CA}, "h", FakeSsl())

    def old_umqtt_connect(clean, timeout):  # ssl=True + ssl_params: never calls the context
        return False

    def new_umqtt_connect(clean, timeout):
        c.wrap_socket(RawSock(), server_hostname="h")
        return False

    e = raises(ct_tls.TLSError, c.checked(old_umqtt_connect), False, 5)
    assert "too old" in str(e)
    assert c.checked(new_umqtt_connect)(False, 5) is False


def test_reason_names_what_to_fix():
    assert ct_tls.reason(ct_tls.TLSError("mqtt.tls.ca: x")) == "tls config: mqtt.tls.ca: x"
    assert ct_tls.reason(OSError(-9984, "MBEDTLS_ERR_X509_CERT_VERIFY_FAILED")).startswith(
        "tls: server certificate")
    assert ct_tls.reason(OSError(-30592, "MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE")).startswith(
        "tls: refused")
    assert ct_tls.reason(OSError(110)) == "timeout"


main(globals())
