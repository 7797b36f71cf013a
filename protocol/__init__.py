"""ColdTrace protocol: what every party must agree on.

Record format (deterministic CBOR in COSE_Sign1), the per-device hash chain,
the RFC 9162 Merkle log, C2SP checkpoints, anchor receipts, trace bundles and
the bundle verifier. See docs/protocol.md. This package imports neither
``gateway`` nor ``cloud``.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
