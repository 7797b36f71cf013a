"""ColdTrace end-to-end demo (`coldtrace demo`, `make demo`).

The whole system on this machine, on the embedded defaults: a real
Mosquitto, the gateway process and the firmware on simulated devices, one
pallet's day replayed, its trace bundle verified and two tampered copies
refused.

- run.py     the ``coldtrace demo`` command and its steps
- system.py  the running parts: broker, gateway process, alert monitor
- world.py   the pallet's day, replayed on the devices' own firmware
- show.py    what the demo prints: charts, custody, alerts, tampering
"""
