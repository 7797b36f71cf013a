# ColdTrace boot. First the firmware slot (ct_ota, docs/protocol.md §5.4):
# a verified update in /slot_a or /slot_b goes before /lib on sys.path; a
# slot on trial gets "ota.k" boots to report healthy, then /lib or the
# previous slot runs again. Then count this start as a failure until
# main.py finishes a cycle (ct_app.boot_failures); after "safe_after" failed
# starts in a row the app runs in safe mode (no sensors or NFC, only status
# records and uploads).
import machine

try:
    import ct_ota

    ct_ota.activate(ct_ota.boot())
except Exception as e:  # never stop the board from reaching the REPL
    print("boot: ota:", e)

try:
    import ct_app

    ct_app.boot_failures(machine.RTC())
except Exception as e:  # never stop the board from reaching the REPL
    print("boot:", e)
