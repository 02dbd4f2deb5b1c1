"""Derived documents, built from the index and the stored objects off the write path.

- ``series_store``: where a series' derived documents live and how one is read or built;
- ``metadata``: the gzip'd series and study metadata documents (what OHIF asks for on
  every open), kept in the blob store under ``derived/`` and keyed by series version;
- ``deriver``: the thread that follows the change feed and rebuilds what changed.
"""
