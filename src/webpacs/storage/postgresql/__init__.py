"""The PostgreSQL index (psycopg 3 and its pool): ``index: "postgresql"``.

Modules: ``schema`` (tables, the schema version, creation and migration on start),
``sql`` (QIDO conditions and searches as SQL) and ``index`` (``PgIndex``: writes, reads,
the change feed). The QIDO row rules are ``storage.rows``'.
"""

from webpacs.storage.postgresql.index import PgIndex

__all__ = ["PgIndex"]
