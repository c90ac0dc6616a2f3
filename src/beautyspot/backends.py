"""Choosing a task DB backend from a target: a SQLite path or a PostgreSQL URL.

``open_task_db()`` is how the library and the CLI turn ``--db``/``BEAUTYSPOT_DB`` into a
task DB: ``postgresql://`` and ``postgres://`` URLs open :class:`PostgresTaskDB`
(imported only then, so SQLite users never import psycopg), anything else is a path for
:class:`~beautyspot.db.SQLiteTaskDB`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .workspace import is_server_url  # the one test of a URL, re-exported here

if TYPE_CHECKING:
    from .db import SQLiteTaskDB
    from .postgres import PostgresTaskDB

ENV_VAR = "BEAUTYSPOT_DB"


def open_task_db(
    target: str | os.PathLike | None = None, **kw: Any
) -> SQLiteTaskDB | PostgresTaskDB:
    """The task DB *target* names; keyword arguments go to the backend's constructor.

    *target* None means ``$BEAUTYSPOT_DB`` when set (and not empty), else SQLite's default
    path (``.beautyspot/beautyspot.db``).
    """
    if target is None:
        target = os.environ.get(ENV_VAR) or None
    if is_server_url(target):
        from .postgres import PostgresTaskDB

        return PostgresTaskDB(str(target).strip(), **kw)
    from .db import DEFAULT_DB_PATH, SQLiteTaskDB

    return SQLiteTaskDB(Path(target) if target is not None else DEFAULT_DB_PATH, **kw)
