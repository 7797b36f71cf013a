"""ColdTrace cloud service: the service, custody, traces, exports, page assets.

cloud/ is the cloud service: its API and storage of custody and traces, the
exports of verified bundles (`coldtrace export`, cloud/exports/) and the
consumer page's assets. The end-to-end demo (`coldtrace demo`) is not part
of it: it lives in the top-level demo/ package.
"""
