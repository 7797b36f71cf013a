"""Wi-Fi up and down with deadlines, and NTP time, for the ESP32.

The radio is the biggest current draw (110 mA average while associating):
it is switched on only for an upload and off right after. Every wait has a
deadline and feeds the watchdog while it waits.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x

import ct_ticks

_POLL_MS = const(100)


class NetError(Exception):
    pass


class WiFi:
    def __init__(self, network, ssid, key, timeout_ms=15000, feed=None):
        self._network = network
        self._ssid = ssid
        self._key = key
        self._timeout = timeout_ms
        self._feed = feed or (lambda: None)
        self._wlan = None

    def up(self):
        if not self._ssid:
            raise NetError("no Wi-Fi configured")
        w = self._network.WLAN(self._network.STA_IF)
        self._wlan = w
        w.active(True)
        if not w.isconnected():
            w.connect(self._ssid, self._key)
            t0 = ct_ticks.ticks_ms()
            while not w.isconnected():
                if ct_ticks.ticks_diff(ct_ticks.ticks_ms(), t0) > self._timeout:
                    self.down()
                    raise OSError(110)  # ETIMEDOUT: the app backs off
                self._feed()
                ct_ticks.sleep_ms(_POLL_MS)
        return w

    def rssi(self):
        try:
            return max(-128, min(0, self._wlan.status("rssi")))
        except Exception:
            return None

    def down(self):
        if self._wlan is not None:
            try:
                self._wlan.disconnect()
            except OSError:
                pass
            self._wlan.active(False)


def ntp_time(ntptime, host, timeout_s=2):
    """Unix seconds from NTP, or None. (ntptime.time() is in the port epoch.)"""
    try:
        ntptime.host = host
        ntptime.timeout = timeout_s
        t = ntptime.time()
    except (OSError, IndexError):
        return None
    return t
