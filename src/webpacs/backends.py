"""The backends by name (fsspec style): ``name -> ("module.Class", install hint)``.

The one list of backend names: ``storage.registry`` imports the class a name points at,
lazily; ``config`` checks the ``index``/``blobs`` settings against these names. It sits
beside ``config.py`` at the bottom of the layers, and imports nothing.
"""

from __future__ import annotations

#: The one list of backend names (``index``/``blobs`` settings are checked against it).
INDEXES: dict[str, tuple[str, str]] = {
    "sqlite": ("webpacs.storage.sqlite.SqliteIndex", ""),
    "couchdb": ("webpacs.storage.couchdb.index.CouchIndex", "httpx (pip install httpx)"),
    "postgresql": (
        "webpacs.storage.postgresql.index.PgIndex",
        "psycopg 3 and psycopg_pool (pip install 'webpacs[postgresql]')",
    ),
}
BLOBS: dict[str, tuple[str, str]] = {
    "files": ("webpacs.storage.fs.FileBlobs", ""),
    "s3": ("webpacs.storage.s3.S3Blobs", "boto3 (pip install boto3)"),
}
