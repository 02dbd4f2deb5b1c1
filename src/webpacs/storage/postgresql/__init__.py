"""The PostgreSQL index (psycopg 3 and its pool): ``index: "postgresql"``.

Modules: ``schema`` (tables, the schema version, creation and migration on start) and
``index`` (``PgIndex``: connections, locks, the change feed and its notifications).
The QIDO row rules are ``storage.rows``', the statements ``storage.sqltables``'.
"""

from webpacs.storage.postgresql.index import PgIndex

__all__ = ["PgIndex"]
