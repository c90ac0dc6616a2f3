"""Helpers and fixtures for the completion tests: a real workspace, a clean environment.

Not a ``conftest.py``: other suites ``from conftest import ...`` the root one, and a
second module of that name would shadow it.  Test modules import the fixtures from here
(``*_fixture``; pytest knows them by their ``name``).

The workspace is written by :class:`beautyspot.db.SQLiteTaskDB` (then shut down, so no
``-wal``/``-shm`` file is left) in ``tmp_path/.beautyspot``; completion runs with
``tmp_path`` as the current directory and the installed ``beautyspot`` first on PATH.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from beautyspot.db import SQLiteTaskDB

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent
BIN = BIN_DIR / "beautyspot"
COMPLETIONS = REPO / "completions"

# (db file, [(cache_key, func_name, func_identifier)])
ALPHA = [
    ("3fa0c1", "fetch_page", "app.web.fetch_page"),
    ("3fa0c2", "fetch_page", "app.web.fetch_page"),
    ("3fa9d0", "fetch_user", "app.web.fetch_user"),
    ("3fb000", "embed_doc", "app.llm.embed_doc"),
    ("abc123", "embed_doc", "app.llm.embed_doc"),
    ("3fa\x1bevil", "fetch_page", "app.web.fetch_page"),  # never offered: a control char
]
BETA = [
    ("3fa777", "score_doc", "app.rank.score_doc"),
    ("ffff00", "score_doc", "app.rank.score_doc"),
]


def write_db(path: Path, rows: list[tuple[str, str, str | None]]) -> None:
    db = SQLiteTaskDB(path)
    try:
        db.init_schema()
        for key, func, ident in rows:
            db.save(key, func, ident, "input", None, "DIRECT_BLOB", None, result_data=b"\x01")
    finally:
        db.shutdown()


@pytest.fixture(scope="session", name="workspace_template")
def workspace_template_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("completion-ws") / ".beautyspot"
    root.mkdir()
    (root / ".gitignore").write_text("*\n")
    write_db(root / "alpha.db", ALPHA)
    write_db(root / "beta.sqlite", BETA)
    (root / "broken.db").write_text("not a database\n")  # unreadable: skipped, others answer
    return root


@pytest.fixture(name="ws")
def ws_fixture(workspace_template: Path, tmp_path: Path) -> Path:
    """``tmp_path/.beautyspot`` (two task DBs and a broken one); cwd for completion."""
    import shutil

    dest = tmp_path / ".beautyspot"
    shutil.copytree(workspace_template, dest)
    (tmp_path / "notes.txt").write_text("a plain file, for the shells' file fallback\n")
    return dest


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BEAUTYSPOT_", "_BEAUTYSPOT_", "_TYPER_", "COMP_"))
    }
    env["PATH"] = f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run_complete(cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run the installed ``beautyspot`` with a completion request in *env*."""
    return subprocess.run(
        [str(BIN)],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
