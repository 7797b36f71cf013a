"""Exports of verified trace bundles to formats other systems read.

Every export starts from :func:`cloud.exports.evidence.load_evidence`, which
verifies the bundle (docs/protocol.md §11) and refuses it when it does not
verify: nothing unverified is ever exported.

- :mod:`cloud.exports.epcis`: a GS1 EPCIS 2.0 JSON-LD document;
- :mod:`cloud.exports.fsma`: an FSMA 204 sortable spreadsheet (CSV);
- :mod:`cloud.exports.cli`: ``coldtrace export epcis|fsma``.

See docs/operations.md, "Exports".
"""
