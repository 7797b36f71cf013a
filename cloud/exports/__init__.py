"""Exports of verified trace bundles to formats other systems read.

Every export starts from verified evidence (:mod:`cloud.exports.evidence`):
the bundle is verified (docs/protocol.md §11) and refused when it does not
verify: nothing unverified is ever exported.

- :func:`render` (:mod:`cloud.exports.api`): the one entry point, for the CLI
  and a web API: ``render(kind, bundle_bytes, trust, **options) ->
  (content, media_type, filename)``;
- :mod:`cloud.exports.epcis`: a GS1 EPCIS 2.0 JSON-LD document;
- :mod:`cloud.exports.fsma`: an FSMA 204 sortable spreadsheet (CSV or XLSX);
- :mod:`cloud.exports.cli`: ``coldtrace export epcis|fsma``.

See docs/operations.md, "Exports".
"""

from cloud.exports.api import MEDIA_TYPES, Rendered, render, render_evidence
from cloud.exports.evidence import (
    ExportError,
    ExportOptionError,
    NotVerifiedError,
    UnreadableInputError,
)

__all__ = [
    "MEDIA_TYPES",
    "ExportError",
    "ExportOptionError",
    "NotVerifiedError",
    "Rendered",
    "UnreadableInputError",
    "render",
    "render_evidence",
]
