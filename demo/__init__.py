"""ColdTrace end-to-end demo (`coldtrace demo`, `make demo`).

The whole system on this machine, on the embedded defaults: three
organisations (a packhouse, a carrier, a distribution centre), each with a
real Mosquitto and its gateway process, the firmware on simulated devices,
and the cloud service the gateways push to; one pallet's day replayed, its
trace across the organisations from the cloud, the bundle verified with the
cloud's trust file and two tampered copies refused; the tags commissioned
with the cloud and tapped on the consumer page (genuine, then replayed), the
DC gateway's dashboard, the shipment release report, and a spare part
(provenance: GENUINE) beside its counterfeit (SUSPECT).

- run.py     the ``coldtrace demo`` command and its steps
- system.py  the running parts: brokers, gateway processes, alert monitors, the cloud
- world.py   the organisations and the pallet's day, replayed on the devices' own firmware
- show.py    what the demo prints: charts, custody, checkpoints, alerts, tampering
"""
