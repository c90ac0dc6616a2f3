"""Console-script entry point: imports as little as possible before dispatching."""

from __future__ import annotations

import sys


def main() -> None:
    from .app import run

    sys.exit(run())
