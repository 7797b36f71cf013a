"""What main.py runs on the board: load the configuration, build the board,
the core and the role's app, and run it.

Logger: one ct_app.Logger cycle, then deep sleep (the next wake boots into
main.py again). Reader: a loop of ct_reader.Reader.step with uploads after
scans, forever. Holding the button during reset skips all of it, so
mpremote can reach the REPL of a board that would otherwise sleep.
"""

import json

import machine

import ct_app
import ct_board
import ct_clock
import ct_net
import ct_ticks

_CONFIG = "config.json"
_SETTINGS = "settings.json"


class MainError(Exception):
    pass


def load_config():
    with open(_CONFIG) as f:
        cfg = json.load(f)
    for k in ("id", "role"):
        if k not in cfg:
            raise MainError("config.json: missing " + k)
    if cfg.get("uplink", "wifi") not in ("wifi", "lte"):
        raise MainError("config.json: uplink must be wifi or lte")
    return cfg


def load_settings():
    try:
        with open(_SETTINGS) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def save_settings(s):
    import os

    with open(_SETTINGS + ".tmp", "w") as f:
        json.dump(s, f)
    os.rename(_SETTINGS + ".tmp", _SETTINGS)


def button_held(board):
    b = board.pins.get("button")
    if b is None:
        return False
    p = machine.Pin(b, machine.Pin.IN, machine.Pin.PULL_UP)
    return p() == 0


def open_core(cfg, board):
    """The signing/queue/uplink core, with Wi-Fi (or, with "uplink": "lte",
    the SIM7080G over PPP) for its uploads."""
    import network

    import ct_core

    if cfg.get("uplink", "wifi") == "lte":
        return ct_core.open_device(cfg, board, open_lte(cfg, board, network))
    w = cfg.get("wifi", {})
    wifi = ct_net.WiFi(network, w.get("ssid"), w.get("key"), w.get("timeout_ms", 15000),
                       board.feed)
    return ct_core.open_device(cfg, board, wifi)


def _ntp_sync(clock):
    # NTP time sets the clock before the connection (TLS checks dates)
    def sync(t):
        try:
            clock.sync(t, ct_clock.NTP)
        except ct_clock.ClockError:
            pass

    return sync


def open_lte(cfg, board, network):
    """ct_lte.Lte on the board's modem pins (hardware/pins.json)."""
    import ct_lte

    c = cfg.get("lte", {})
    p = board.pins
    for k in ("modem_tx", "modem_rx", "modem_pwrkey"):
        if k not in p:
            raise MainError("uplink lte: the pin map has no " + k)
    uart = machine.UART(c.get("uart", 1), baudrate=c.get("baud", 115200), tx=p["modem_tx"],
                        rx=p["modem_rx"], timeout=0, rxbuf=2048)
    key = machine.Pin(p["modem_pwrkey"], machine.Pin.OUT,
                      value=0 if c.get("pwrkey_active", 1) else 1)  # PWRKEY released
    return ct_lte.Lte(uart, key, network.PPP, c, feed=board.feed)


def run():
    cfg = load_config()
    board = ct_board.Board(cfg)
    if button_held(board):
        print("button held: REPL")
        return
    core = open_core(cfg, board)
    if cfg["role"] == "logger":
        logger(cfg, board, core)
    else:
        reader(cfg, board, core)


def logger(cfg, board, core):
    import ct_block
    import ct_ota

    settings = load_settings()
    lg = ct_app.Logger(cfg, board, core, lambda: ct_board.channels(cfg, board, settings),
                       settings, ct_ota.from_config(cfg, core, board.feed),
                       blocks=ct_block.from_config(cfg))
    ms = lg.cycle()
    if lg.settings_dirty:
        save_settings(lg.settings)
    core.close()
    board.deep_sleep(ms)


def reader(cfg, board, core):
    import ct_reader
    import ct_ui

    p = board.pins
    clock = ct_clock.Clock(board.now, board.set_time, board.offset)
    rd = ct_reader.Reader(
        cfg, ct_board.nfc_reader(cfg, board), core, clock,
        ct_ui.Button(machine.Pin(p["button"], machine.Pin.IN, machine.Pin.PULL_UP)),
        ct_ui.Led(machine.Pin(p["led_ok"], machine.Pin.OUT)),
        ct_ui.Led(machine.Pin(p["led_err"], machine.Pin.OUT)),
        board.batt_mv,
    )
    next_up = 0
    while True:
        board.feed()
        now = ct_ticks.ticks_ms()
        rd.step(now)
        due = rd.upload_due(now) or ct_ticks.ticks_diff(now, next_up) >= 0
        if due:
            try:
                for item in core.upload(cfg.get("upload_ms", 20000), clock.src == 0,
                                        clock.now, _ntp_sync(clock)):
                    if item[0] == "time":  # a fresh ack's time, never the retained one
                        clock.sync(item[1], ct_clock.GATEWAY)
                    elif item[0] == "ntp":
                        clock.sync(item[1], ct_clock.NTP)
                rd.uploaded()
                next_up = ct_ticks.ticks_ms() + cfg.get("upload", 3600) * 1000
            except (OSError, ct_clock.ClockError):
                next_up = ct_ticks.ticks_ms() + 60000
        ct_ticks.sleep_ms(10)
