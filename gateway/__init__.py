"""ColdTrace gateway: what a warehouse operator runs.

It takes every record the devices publish over MQTT, verifies it, stores it
durably before it lets the device forget it (the application-level ack of
docs/protocol.md §5.2), keeps what it refuses in quarantine with the reason,
appends every accepted record to an RFC 9162 Merkle log, signs checkpoints
(C2SP signed notes) and anchors them on a ledger.

Modules (service glue around the ``protocol`` library):

- ``config``: ``gateway.toml``;
- ``store``: the storage interface and its SQLite (WAL) backend;
- ``mqtt``: a small adapter around paho-mqtt 2.x;
- ``ingest``: the checks, each with its own rejection reason, and the batched
  pipeline (batched commits, acks); ``verifiers``: where the signature checks
  run on every core (worker processes, or a thread pool);
- ``log``: the Merkle log, checkpoints and crash recovery;
- ``ledger``: the ledger interface and the local (embedded) backend;
- ``proofs``: inclusion and consistency proofs and trace bundles;
- ``registry``: devices, registration records, revocation, ack keys;
- ``service``: ``coldtrace gateway run``; ``cli``: the ``gateway`` subcommands;
- ``dashboard``: the operator's web page (live devices, readings, alerts with
  acknowledgement, rejects, checkpoints, witnesses, anchors, lots in transit;
  page files in ``static/``).

``broker`` (Mosquitto configuration), ``alerts`` and ``metrics`` are owned
separately and used through the interfaces documented at their tops.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
