"""GPIO numbers per board and role.

This table is the firmware's copy of hardware/pins.json (the wiring, with
part pins and notes); tests/firmware/scripts/hardware.py fails when the two
drift apart or a pin breaks a chip rule (flash pins, input-only pins, ADC2
with Wi-Fi, strapping pins, RTC-capable wake button).

    ct_pins.pins("esp32s3", "logger")["i2c_sda"]    # -> 8
    ct_pins.of(cfg)     # the map of config.json's "board" and "role"
"""

BOARD = "esp32s3"  # config.json without "board"
ROLE = "logger"  # config.json without "role"

PINS = {
    "esp32s3": {
        "logger": {
            "ow": 4,
            "sensor_pwr": 5,
            "i2c_sda": 8,
            "i2c_scl": 9,
            "batt_adc": 1,
            "chg_stat": 7,
            "led": 2,
            "button": 0,
            "modem_tx": 17,
            "modem_rx": 18,
            "modem_pwrkey": 16,
        },
        "reader": {
            "spi_sck": 12,
            "spi_mosi": 11,
            "spi_miso": 13,
            "nfc_cs": 10,
            "nfc_irq": 14,
            "nfc_rst": 21,
            "i2c_sda": 8,
            "i2c_scl": 9,
            "batt_adc": 1,
            "led_ok": 38,
            "led_err": 39,
            "buzzer": 40,
            "button": 0,
        },
    },
    "esp32": {
        "logger": {
            "ow": 4,
            "sensor_pwr": 25,
            "i2c_sda": 21,
            "i2c_scl": 22,
            "batt_adc": 34,
            "chg_stat": 39,
            "led": 26,
            "button": 0,
            "modem_tx": 17,
            "modem_rx": 16,
            "modem_pwrkey": 27,
        },
        "reader": {
            "spi_sck": 18,
            "spi_mosi": 23,
            "spi_miso": 19,
            "nfc_cs": 27,
            "nfc_irq": 35,
            "nfc_rst": 32,
            "i2c_sda": 21,
            "i2c_scl": 22,
            "batt_adc": 34,
            "led_ok": 25,
            "led_err": 26,
            "buzzer": 33,
            "button": 0,
        },
    },
}


class PinsError(Exception):
    pass


def pins(board, role):
    try:
        return PINS[board][role]
    except KeyError:
        raise PinsError("no pin map for %s/%s" % (board, role))


def of(cfg):
    """The pin map of config.json's board and role (defaults BOARD, ROLE)."""
    return pins(cfg.get("board", BOARD), cfg.get("role", ROLE))
