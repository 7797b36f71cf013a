"""The block-logging device of app_blocks.py and the rel_* scripts: the logger
(ct_app with ct_block) on the real core, queue and uplink, a fake LittleFS
that loses power on cue, a scripted broker and gateway (both interpreters).
``ota`` (optional) makes the Updater a wake runs with, after boot.py's slot
selection; ``signer`` replaces the P-256 signer (the scripted gateway checks
chains, not signatures)."""

import ct_app
import ct_block
import ct_cbor
import ct_clock
import ct_core
import ct_p256
import ct_queue
import ct_record
import ct_rtcmem
import ct_state
import ct_uplink
from fake_board import FakeBoard
from fakebroker import FakeBroker
from fakeclock import FakeTicks
from fakefs import Disk, FakeFs, PowerCut
from fakegateway import FakeGateway
from umqtt.simple import MQTTClient

DEV = "tl-blk1"
KEY = bytes(range(32))
SECRET = bytes(range(1, 33))
CFG = {
    "id": DEV,
    "interval": 300,
    "upload": 3600,
    "heartbeat": 86400,
    "alarm": {"high": 800, "low": 200, "delay": 600},
}


class Rig:
    """One block-logging device: disk, RTC memory, broker, gateway."""

    def __init__(
        self,
        temps,
        size=4,
        cfg=CFG,
        rh=False,
        synced=True,
        skew=0,
        queue=(8, 4096, 512, 2048),
        disk=None,
        signer=None,
        dev=DEV,
        secret=SECRET,
        ntp=None,
    ):
        self.disk = disk if disk is not None else Disk()
        self.board = FakeBoard(t=1000)
        self.ticks = FakeTicks(100000)
        if synced:  # the clock was set by the gateway just before (tq 3)
            clock = ct_clock.Clock(self.board.now, self.board.set_time, 0)
            # = FakeGateway.time() - skew, on the grid
            clock.sync(1790000100 - skew, ct_clock.GATEWAY)
            ct_rtcmem.RTCMem(self.board.rtc).put(ct_app._K_CLOCK, clock.pack())
        self.broker = FakeBroker("broker-blk", self.ticks)
        self.dev = dev
        self.ntp = ntp  # the core's NTP query (-> Unix seconds), or None
        self.gw = FakeGateway(self.broker, dev, KEY, self.ticks)
        self.signer = signer or ct_p256.Signer(secret)
        self.ota = None  # fs -> a ct_ota.Updater (after boot.py's selection) or None
        self.temps = list(temps)
        self.size = size
        self.cfg = cfg
        self.rh = rh
        self.measured = []  # every value a probe returned, in order
        self.logs = []
        self.fs = None
        self.queue = queue

    def probe(self):
        v = self.temps.pop(0)
        if isinstance(v, Exception):
            raise v
        self.measured.append(v)
        return v, (5000 + v if self.rh else None)

    def core(self, fs):
        mem = ct_rtcmem.RTCMem(self.board.rtc)
        st = ct_state.State(fs, "ct/state", mem)
        q = ct_queue.Queue(fs, "ct/q", *self.queue)

        def client():
            return MQTTClient(self.dev, "broker-blk", 1883, keepalive=60)

        up = ct_uplink.Uplink(
            client, self.dev, KEY, q, st, None, 1, 16, 2000, 3000, ticks=self.ticks
        )
        c = ct_core.Core(self.dev, self.signer, st, q, up, None, self.ntp)
        c.start(self.board.reset_cause() == self.board.DEEPSLEEP)
        return c

    def later(self, s):
        self.board.t += s
        self.ticks.advance(s * 1000)

    def wake(self, n=1, cut_at=None, torn=False):
        """n wakes; with cut_at, the first wake loses power at that step of
        the filesystem and returns False."""
        for _ in range(n):
            self.fs = FakeFs(self.disk, cut_at, torn)
            try:
                ota = self.ota(self.fs) if self.ota is not None else None
                core = self.core(self.fs)
                blocks = ct_block.Blocks(self.fs, "ct", self.size)
                lg = ct_app.Logger(
                    self.cfg, self.board, core, [(0, 5, self.probe)], {}, ota, blocks=blocks
                )
                ms = lg.cycle()
                core.close()
                if self.fs.dead:  # the uplink took the cut for a network error:
                    raise PowerCut("caught on the way")  # the power is gone all the same
            except PowerCut:
                self.board.power_cycle()
                self.board.t = 5000 + len(self.logs) * 300  # a fresh RTC, another scale
                return False
            self.logs.append(lg)
            self.board.deep_sleep(ms)
            self.ticks.advance(ms)
        return True

    def flush(self):
        """Sign open blocks and upload (as the simulator does before it stops)."""
        fs = FakeFs(self.disk)
        core = self.core(fs)
        lg = ct_app.Logger(
            self.cfg, self.board, core, [], {}, blocks=ct_block.Blocks(fs, "ct", self.size)
        )
        lg.close_blocks()
        core.upload(2000)
        core.close()


def payloads(gw):
    return [ct_cbor.decode_map(ct_record.parse_sign1(gw.records[s])[1]) for s in sorted(gw.records)]


def expand(p):
    """(time, tq, temp or None, fault or None, rh or None) of each reading of
    a kind-1 or kind-7 payload (§2.8)."""
    if p[1] == 1:
        return [(p[4], p[5], p.get(10), p.get(12), p.get(11))]
    out = []
    t, r = p[18], p.get(19)
    for i in range(len(t) // 2):
        v = (t[2 * i] << 8) | t[2 * i + 1]
        temp = fault = rh = None
        if t[2 * i] == 0x80:
            fault = t[2 * i + 1]
        else:
            temp = v - 0x10000 if v & 0x8000 else v
        if r is not None:
            h = (r[2 * i] << 8) | r[2 * i + 1]
            rh = None if h == 0xFFFF else h
        out.append((p[4] + i * p[17], p[5], temp, fault, rh))
    return out


def readings(gw):
    out = []
    for p in payloads(gw):
        if p[1] in (1, 7):
            out.extend(expand(p))
    return out
