"""The PostgreSQL index (psycopg 3 and its pool): ``index: "postgresql"``.

Modules: ``schema`` (tables, the schema version, creation and migration on start) and
``index`` (``PgIndex``: connections, locks, the change feed and its notifications; QIDO
wildcards as ``LIKE`` patterns). The QIDO row rules are ``storage.rows``'.
"""

from webpacs.storage.postgresql.index import PgIndex

__all__ = ["PgIndex"]
