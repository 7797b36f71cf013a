"""A scripted MQTT broker for the umqtt stand-in (both interpreters).

    clock = FakeTicks()
    b = FakeBroker("broker", clock)      # MQTTClient("dev", "broker") reaches it
    b.refuse = 2                          # the next 2 connects fail (EHOSTUNREACH)
    b.drop_on = {5}                       # the 5th record publish kills the link
    b.lose_puback = {3}                   # the 3rd record publish gets no PUBACK
    b.on_publish = gateway.on_publish     # sees every client publish
    b.publish(topic, msg, retain=True)    # from the gateway side

Sessions follow MQTT 3.1.1: retained messages are sent on subscribe;
a persistent session (clean_session=False) keeps subscriptions and queues
QoS 1 messages while the client is away. Timeouts advance the shared clock.
"""

_BROKERS = {}


class Hang(Exception):
    """The real client would block forever here (no timeout, nothing to read)."""


def lookup(name):
    return _BROKERS[name]


def _match(sub, topic):
    return sub == topic


class Conn:
    def __init__(self, broker):
        self.broker = broker
        self.inbox = []
        self.dead = False
        self.client_id = None
        self.will = None
        self.clean_exit = False


class FakeSock:
    def __init__(self, conn):
        self.conn = conn
        self.timeout = None
        self.closed = False

    def settimeout(self, t):
        self.timeout = t

    def setblocking(self, flag):
        self.timeout = None if flag else 0

    def close(self):
        if not self.closed:
            self.closed = True
            self.conn.broker._lost(self.conn)

    def _alive(self):
        if self.closed or self.conn.dead:
            raise OSError(104)  # ECONNRESET

    def send(self, pkt):
        self._alive()
        self.conn.broker._receive(self.conn, pkt)

    def next_packet(self):
        self._alive()
        if self.conn.inbox:
            return self.conn.inbox.pop(0)
        if self.timeout == 0:
            return None
        if self.timeout is None:
            raise Hang("blocking read without a timeout and nothing will arrive")
        self.conn.broker.clock.advance(int(self.timeout * 1000))
        raise OSError(110)  # ETIMEDOUT


class FakeBroker:
    def __init__(self, name, clock):
        _BROKERS[name] = self
        self.clock = clock
        self.retained = {}
        self.sessions = {}  # client id -> {"subs": set, "pending": list}
        self.conn = None
        self.refuse = 0
        self.down = False
        self.drop_on = set()
        self.lose_puback = set()
        self.on_publish = None
        self.rec_count = 0
        self.log = []  # (kind, topic, msg) of client publishes, in order
        self.connects = 0
        self._pid = 0

    # --- the client side -----------------------------------------------------

    def open(self, timeout):
        if self.down or self.refuse:
            if self.refuse:
                self.refuse -= 1
            self.clock.advance(int((timeout or 1) * 1000))
            raise OSError(113)  # EHOSTUNREACH
        if self.conn is not None:
            self._lost(self.conn)
        self.conn = Conn(self)
        self.connects += 1
        return self.conn

    def _lost(self, conn):
        if conn.dead:
            return
        conn.dead = True
        if conn.will and not conn.clean_exit:
            topic, msg, retain, _ = conn.will
            self.publish(topic, msg, retain)
        if self.conn is conn:
            self.conn = None

    def _receive(self, conn, pkt):
        kind = pkt[0]
        if kind == "connect":
            _, cid, clean, will, _user = pkt
            conn.client_id = cid
            conn.will = will
            present = (not clean) and cid in self.sessions
            if clean or cid not in self.sessions:
                self.sessions[cid] = {"subs": set(), "pending": [], "clean": clean}
            self.sessions[cid]["clean"] = clean
            conn.inbox.append(("connack", present))
            pend = self.sessions[cid]["pending"]
            while pend:
                conn.inbox.append(pend.pop(0))
        elif kind == "publish":
            _, topic, msg, qos, pid, retain = pkt
            n = None
            if topic.endswith(b"/rec"):
                self.rec_count += 1
                n = self.rec_count
                if n in self.drop_on:
                    self._lost(conn)
                    raise OSError(104)
            self.log.append(("publish", topic, msg))
            if qos == 1 and n not in self.lose_puback:
                conn.inbox.append(("puback", pid))
            if retain:
                self.retained[topic] = msg
            if self.on_publish is not None:
                self.on_publish(topic, msg)
        elif kind == "subscribe":
            _, topic, qos, pid = pkt
            self.sessions[conn.client_id]["subs"].add(topic)
            conn.inbox.append(("suback", pid))
            if topic in self.retained:
                conn.inbox.append(self._pub(topic, self.retained[topic]))
        elif kind == "disconnect":
            conn.clean_exit = True
            self._lost(conn)
        elif kind == "pingreq":
            conn.inbox.append(("pingresp",))
        elif kind == "puback":
            pass
        else:
            raise ValueError(f"unknown packet {kind!r}")

    def _pub(self, topic, msg):
        self._pid = self._pid % 65535 + 1
        return ("publish", topic, msg, 1, self._pid)

    # --- the gateway side --------------------------------------------------------

    def publish(self, topic, msg, retain=False):
        if retain:
            self.retained[topic] = msg
        for cid, s in self.sessions.items():
            if not any(_match(sub, topic) for sub in s["subs"]):
                continue
            c = self.conn
            if c is not None and not c.dead and c.client_id == cid:
                c.inbox.append(self._pub(topic, msg))
            elif not s["clean"]:
                s["pending"].append(self._pub(topic, msg))

    def drop(self):
        """The link breaks now (the client finds out on its next call)."""
        if self.conn is not None:
            self._lost(self.conn)
