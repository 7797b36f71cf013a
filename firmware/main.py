# ColdTrace firmware entry point (MicroPython >= 1.22 on ESP32 / ESP32-S3).
# Logger: one measure/record/upload cycle, then deep sleep (the next wake
# starts here again). Reader: a loop polling button, LEDs and tags.
# Any exception is written to crash.txt and the board resets; after repeated
# failures boot.py/ct_app switch to safe mode.
import sys

import machine


def crash(e):
    try:
        with open("crash.txt", "w") as f:
            sys.print_exception(e, f)
    except OSError:
        pass
    sys.print_exception(e)
    machine.reset()


try:
    import ct_main

    ct_main.run()
except KeyboardInterrupt:
    print("stopped: REPL")
except Exception as e:
    crash(e)
