"""Shared state on Postgres for many replicas: routers that follow changes, and the ledger.

Embedded stays the default (saved directories, SQLite ledgers); this package is for
apps that run many processes or machines:

* :func:`publish_router` writes a router (or a saved directory) to Postgres with its
  vectors; :func:`load_shared_router` builds a :class:`RouterReplica` from it without
  embedding anything, and follows the changes any replica writes (LISTEN/NOTIFY, with
  polling by sequence number as a fallback);
* :class:`PostgresSink` keeps the cost ledger in the same database
  (``CostLedger("postgresql://...")``; ``langroute report URL``);
* :mod:`langroute.postgres.database` creates and upgrades the versioned schema.

Needs psycopg 3: ``pip install "langroute[postgres]"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langroute.exports import lazy_exports

if TYPE_CHECKING:
    from langroute.postgres.database import SCHEMA_VERSION, connect, ensure_schema
    from langroute.postgres.ledger import PostgresSink
    from langroute.postgres.replica import (
        FollowerStats,
        RouterReplica,
        load_shared_router,
        publish_router,
    )

__all__ = [
    "SCHEMA_VERSION",
    "FollowerStats",
    "PostgresSink",
    "RouterReplica",
    "connect",
    "ensure_schema",
    "load_shared_router",
    "publish_router",
]

_WHERE = {
    "SCHEMA_VERSION": "langroute.postgres.database",
    "connect": "langroute.postgres.database",
    "ensure_schema": "langroute.postgres.database",
    "PostgresSink": "langroute.postgres.ledger",
    "FollowerStats": "langroute.postgres.replica",
    "RouterReplica": "langroute.postgres.replica",
    "load_shared_router": "langroute.postgres.replica",
    "publish_router": "langroute.postgres.replica",
}


__getattr__, __dir__ = lazy_exports("langroute.postgres", _WHERE, __all__, globals())
