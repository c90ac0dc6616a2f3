"""Shared fixtures: the upstream workspace and a clock fixed before its expiry date."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

UPSTREAM = Path(__file__).parent / "fixtures" / "upstream-2.7.7" / ".beautyspot"
# The fixture was written on 2026-12-03; its live rows expire on 2027-01-02.
FIXTURE_NOW = dt.datetime(2026, 12, 10, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def upstream_ws(tmp_path: Path) -> Path:
    """A writable copy of the upstream 2.7.7 workspace."""
    dest = tmp_path / ".beautyspot"
    shutil.copytree(UPSTREAM, dest)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest
