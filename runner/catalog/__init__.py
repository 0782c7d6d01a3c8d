"""A library catalog: a folder of outputs in SQLite (default) or PostgreSQL, kept in step
with the outputs, queried with plain SQL, `extractor find` and `extractor similar`.

Layout: backend (the two databases behind one small interface) -> schema (tables, view,
version) -> loading (an output file as rows) -> update (one transaction) -> query (find) ->
similar (nearest neighbours) -> commands (the command line).
"""

from runner.catalog.backend import CatalogError, connect
from runner.catalog.update import UpdateReport, update

__all__ = ["CatalogError", "UpdateReport", "connect", "update"]
