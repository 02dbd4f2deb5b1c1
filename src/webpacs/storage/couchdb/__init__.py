"""The scale-out index on CouchDB 3.x (or pouchdb-server): ``index: "couchdb"``.

Modules: ``index`` (``CouchIndex``, writes and the change feed), ``search`` (QIDO
through Mango and views), ``design`` (documents, views, indexes) and ``http`` (the
bounded HTTP client). The QIDO row rules are ``storage.rows``'.
"""

from webpacs.storage.couchdb.index import CouchIndex

__all__ = ["CouchIndex"]
