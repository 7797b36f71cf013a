# ColdTrace boot: count this start as a failure until main.py finishes a cycle
# (ct_app.boot_failures); after "safe_after" failed starts in a row the app
# runs in safe mode (no sensors or NFC, only status records and uploads).
import machine

try:
    import ct_app

    ct_app.boot_failures(machine.RTC())
except Exception as e:  # never stop the board from reaching the REPL
    print("boot:", e)
