"""Retention: what the platform keeps no longer than it needs.

* :mod:`.orphans` - blobs no row refers to (what a crashed import or put left in storage).

Export bundles expire in :mod:`labelvault.export.expiry`.
"""
