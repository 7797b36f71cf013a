"""ColdTrace cloud service (docs/cloud.md).

- ``app``: the ASGI application (FastAPI) and its endpoints; ``cli``: ``coldtrace cloud``;
- ``config``: cloud.toml; ``db`` + ``migrations/``: the schema (SQLAlchemy Core, Alembic);
- ``push``: gateways' pushes, re-verified and stored whole or refused whole;
- ``logs``: the mirrored logs, their checkpoints, cosignatures, receipts, and the trust;
- ``witness``: the cloud's witness key and peer witnesses' cosignatures;
- ``orgs``: organisations, tokens, pinned keys, the audit log;
- ``traces``: one item's custody and verdict across every organisation's log;
- ``exports``: EPCIS 2.0 and FSMA 204 from verified bundles (also ``coldtrace export``).

The consumer page comes with its own issue. The end-to-end demo (``coldtrace demo``)
is not part of the service: it lives in the top-level demo/ package.
"""
