"""Fixtures of the reliability suite, and the figures summary printed after the run.

Each test records its figures (trials run, rows lost, blobs wrongly deleted, tracebacks
seen...) through the ``figures`` fixture: one line is printed (visible with ``-s``) and
repeated in a "beautyspot reliability figures" section at the end of the session.
"""

from __future__ import annotations

import time

import pytest

from . import relkit

_FIGURES: list[str] = []


@pytest.fixture
def figures(request):
    """``figures(**numbers)``: print and keep this test's one-line summary."""

    def record(**numbers) -> str:
        line = relkit.summary(request.node.name, **numbers)
        print(line)
        _FIGURES.append(line)
        return line

    return record


@pytest.fixture(scope="session")
def big_master(tmp_path_factory) -> relkit.BigSpec:
    """The kill -9 workspace, built once per session (cloned for every trial)."""
    root = tmp_path_factory.mktemp("big-master") / ".beautyspot"
    t0 = time.monotonic()
    spec = relkit.build_big_workspace(root, relkit.big_rows())
    print(f"built {relkit.big_rows()}-row workspace in {time.monotonic() - t0:.1f}s")
    return spec


@pytest.fixture(scope="session")
def small_master(tmp_path_factory) -> relkit.BigSpec:
    """A 600-row workspace of the same shape (WAL DBs), built once per session."""
    root = tmp_path_factory.mktemp("small-master") / ".beautyspot"
    return relkit.build_big_workspace(root, 600)


@pytest.fixture(scope="session")
def small_master_rollback(tmp_path_factory) -> relkit.BigSpec:
    """The same in rollback-journal mode (old DBs), where a writer can block readers."""
    root = tmp_path_factory.mktemp("small-master-rj") / ".beautyspot"
    return relkit.build_big_workspace(root, 600, wal=False)


def pytest_terminal_summary(terminalreporter) -> None:
    if _FIGURES:
        terminalreporter.section("beautyspot reliability figures")
        terminalreporter.write_line(
            f"trials: BEAUTYSPOT_RELIABILITY_TRIALS={relkit._TRIALS_ENV or '(default)'}"
            f" rows={relkit.big_rows()} seed={relkit.SEED}"
        )
        for line in _FIGURES:
            terminalreporter.write_line(line)
