"""ColdTrace cloud service: trace assembly, the consumer page, exports.

For now it holds the end-to-end demo (`coldtrace demo`) and the exports of
verified bundles (`coldtrace export`, cloud/exports/); the service comes with
its own issue.
"""
