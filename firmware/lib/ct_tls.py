"""TLS for the MQTT uplink: the broker CA, this device's client certificate,
the server name, and a timeout on every read and write.

config.json (firmware/README.md, "Configuration"):

    "mqtt": {"host": "10.0.7.2", "port": 8883,
             "tls": {"ca": "ct/ca.pem", "cert": "ct/tls.pem", "key": "ct/tls.key",
                     "server_name": "broker.wh7.example"}}

    ctx = ct_tls.Context(cfg["mqtt"]["tls"], host)   # TLSError if unusable
    MQTTClient(dev, host, port, ..., ssl=ctx)      # umqtt.simple >= 1.4

umqtt.simple calls ``ctx.wrap_socket(sock, server_hostname=host)`` after it
has set the socket timeout and connected; the handshake runs under that
timeout. The peer must present a certificate from ``ca`` (CERT_REQUIRED;
there is no way to turn that off) for ``server_name`` (default: the host),
so ``host`` can be an IP address - ``getaddrinfo`` has no timeout on
MicroPython - while the name is still checked. ``cert``/``key`` (PEM, P-256;
``coldtrace device provision --client-cert/--client-key`` puts them there)
are required by the production broker, whose TLS listener takes the
certificate's CN as the user name.

Ports. MicroPython >= 1.22 on the ESP32 (mbedTLS): ``SSLContext``,
``load_verify_locations`` and ``load_cert_chain`` take the certificate and
key *data* (1.22's C module only data, positionally; 1.23+'s ``ssl``
wrapper data or a path); this module reads the files and passes bytes.
CPython (tests, the simulator) takes file paths. MicroPython's TLS socket
has ``setblocking`` but no ``settimeout``, and ``setblocking(True)`` (which
umqtt calls after every read) would leave a read with no deadline: the
socket returned here keeps the plain socket beneath and sets its timeout,
which every mbedTLS read and write goes through.
"""

import sys

_MP = sys.implementation.name == "micropython"


class TLSError(Exception):
    pass


def _data(path, what):
    try:
        with open(path, "rb") as f:
            d = f.read()
    except OSError:
        raise TLSError("mqtt.tls.%s: cannot read %s" % (what, path))
    if not d:
        raise TLSError("mqtt.tls.%s: %s is empty" % (what, path))
    return d


class Context:
    """What umqtt.simple takes as ``ssl``."""

    def __init__(self, tls, host, ssl=None):
        if ssl is None:
            import ssl
        if type(tls) is not dict or not tls.get("ca"):
            raise TLSError('mqtt.tls needs "ca": the broker CA certificate file')
        cert, key = tls.get("cert"), tls.get("key")
        if (cert is None) != (key is None):
            raise TLSError('mqtt.tls needs both "cert" and "key" (or neither)')
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        what = "ca"
        try:
            if _MP:
                ca = _data(tls["ca"], "ca")
                try:
                    ctx.load_verify_locations(cadata=ca)
                except TypeError:  # 1.22: positional data only
                    ctx.load_verify_locations(ca)
                if cert is not None:
                    what = "cert"
                    ctx.load_cert_chain(_data(cert, "cert"), _data(key, "key"))
            else:
                ctx.load_verify_locations(cafile=tls["ca"])
                if cert is not None:
                    what = "cert"
                    ctx.load_cert_chain(cert, key)
        except TLSError:
            raise
        except Exception as e:  # noqa: BLE001 - mbedTLS/OpenSSL parse errors
            raise TLSError("mqtt.tls.%s: not usable: %r" % (what, e))
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.name = tls.get("server_name") or host
        self._ctx = ctx
        self.wrapped = 0

    def wrap_socket(
        self, sock, server_side=False, do_handshake_on_connect=True, server_hostname=None
    ):
        # the configured name, whatever umqtt passes (it passes the host)
        self.wrapped += 1
        return Sock(self._ctx.wrap_socket(sock, server_hostname=self.name), sock)

    def checked(self, connect):
        """``connect`` that fails loudly if the client did not wrap its
        socket with this context: umqtt.simple before 1.4 takes ``ssl=True``
        and ``ssl_params`` and would connect without checking anything."""

        def run(*a, **kw):
            n = self.wrapped
            r = connect(*a, **kw)
            if self.wrapped == n:
                raise TLSError(
                    "umqtt.simple did not use the TLS context (too old: mip install umqtt.simple)"
                )
            return r

        return run


class Sock:
    """A TLS socket whose timeouts are set where they work."""

    def __init__(self, tls, raw):
        self._s = tls
        # CPython's SSLSocket takes timeouts itself (the plain socket is
        # detached); MicroPython's reads and writes go through ``raw``
        self._timer = tls if hasattr(tls, "settimeout") else raw

    def settimeout(self, t):
        self._timer.settimeout(t)

    def setblocking(self, flag):
        self._timer.setblocking(flag)

    def read(self, n):
        try:
            return self._s.read(n)
        except OSError as e:
            if _MP or e.__class__.__name__ != "SSLWantReadError":
                raise
            return None  # CPython, non-blocking and nothing there: as MicroPython

    def write(self, b, n=None):
        if n is not None:
            b = memoryview(b)[:n]
        return self._s.write(b)

    def close(self):
        self._s.close()


def reason(e):
    """A short status for a failed connection: what a person must fix.
    (mbedTLS on the board reports a bad name and an unknown CA alike, as
    MBEDTLS_ERR_X509_CERT_VERIFY_FAILED, -0x2700.)"""
    if isinstance(e, TLSError):
        return "tls config: " + str(e)
    low = repr(e).lower()
    if "hostname" in low:
        return "tls: server name mismatch"
    if "verify" in low or "-9984" in low:
        return "tls: server certificate not trusted"
    if "alert" in low or "certificate" in low or "eof" in low or "reset" in low:
        return "tls: refused by the broker (client certificate?)"
    if "timed out" in low or "110" in low:
        return "timeout"
    return "error: " + repr(e)
