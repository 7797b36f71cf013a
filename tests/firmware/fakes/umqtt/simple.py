"""Test stand-in for micropython-lib's ``umqtt.simple`` (written from its
API, not copied): the same MQTTClient methods and, on purpose, the same
pitfalls, so ct_uplink is tested against them:

* ``wait_msg`` sets the socket blocking (no timeout) after its first read;
* a QoS 1 ``publish`` waits for the PUBACK in a loop with no deadline of its
  own, comparing the unwrapped ``self.pid`` with the 16-bit id on the wire
  (so after 65535 ids it never matches: micropython-lib issue #94);
* subscribe waits for the SUBACK the same way.

Packets travel as tuples through ``fakebroker.FakeSock``; a read that would
block forever raises ``fakebroker.Hang`` (the test fails instead of hanging).
"""

import fakebroker


class MQTTException(Exception):
    pass


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0,
                 ssl=None, ssl_params=None):
        self.client_id = client_id
        self.server = server
        self.port = port
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.sock = None
        self.pid = 0
        self.cb = None
        self.lw = None
        self._rcv_pid = None

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.lw = (topic, msg, retain, qos)

    def connect(self, clean_session=True, timeout=None):
        if self.sock:
            self.sock.close()
        broker = fakebroker.lookup(self.server)
        conn = broker.open(timeout)
        self.sock = fakebroker.FakeSock(conn)
        self.sock.settimeout(timeout)
        self.sock.send(("connect", self.client_id, clean_session, self.lw, self.user))
        op = self.wait_msg()
        if op != 0x20:
            raise MQTTException("no CONNACK")
        return self._present

    def disconnect(self):
        self.sock.send(("disconnect",))
        self.sock.close()

    def ping(self):
        self.sock.send(("pingreq",))

    def publish(self, topic, msg, retain=False, qos=0):
        pid = None
        if qos > 0:
            self.pid += 1
            pid = self.pid
        self.sock.send(("publish", topic, bytes(msg), qos, None if pid is None else pid & 0xFFFF,
                        retain))
        if qos == 1:
            while 1:
                op = self.wait_msg()
                if op == 0x40 and self._rcv_pid == pid:
                    return
        elif qos == 2:
            raise MQTTException("QoS 2 unsupported")

    def subscribe(self, topic, qos=0):
        if self.cb is None:
            raise MQTTException("Subscribe callback is not set")
        self.pid += 1
        pid = self.pid
        self.sock.send(("subscribe", topic, qos, pid & 0xFFFF))
        while 1:
            op = self.wait_msg()
            if op == 0x90:
                if self._rcv_pid != pid:
                    raise MQTTException("SUBACK for another packet")
                return

    def wait_msg(self):
        pkt = self.sock.next_packet()
        self.sock.setblocking(True)  # as umqtt.simple does: any timeout is gone
        if pkt is None:
            return None
        kind = pkt[0]
        if kind == "connack":
            self._present = pkt[1]
            return 0x20
        if kind == "puback":
            self._rcv_pid = pkt[1]
            return 0x40
        if kind == "suback":
            self._rcv_pid = pkt[1]
            return 0x90
        if kind == "pingresp":
            return None
        if kind == "publish":
            _, topic, msg, qos, pid = pkt
            self.cb(topic, msg)
            if qos == 1:
                self.sock.send(("puback", pid))
            return 0x30
        raise MQTTException(f"unexpected packet {kind!r}")

    def check_msg(self):
        self.sock.setblocking(False)
        return self.wait_msg()
