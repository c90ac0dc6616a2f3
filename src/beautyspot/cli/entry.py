"""Console-script entry point: imports as little as possible before dispatching.

A shell completion request (``_BEAUTYSPOT_COMPLETE`` set by the scripts in
``completions/``) is answered by :mod:`.complete` without importing Typer, Click or
Rich; everything else, including ``_BEAUTYSPOT_COMPLETE=source_bash``, goes to the app.
``show`` in the argument forms :func:`.show.parse_direct` recognises runs without the
Typer app too (same output, same exit codes); any other form goes to the app.
"""

from __future__ import annotations

import os
import sys


def _closed_streams() -> int | None:
    """Standard streams the caller closed (``<&-``, ``>&-``): Python makes them None.

    Closed stdin reads as empty (so a destructive command without --yes refuses, and
    ``rm -`` has no keys); closed stderr discards errors (the exit status still tells).
    Closed stdout is a failure before anything is done: every command reports there.
    """
    if sys.stdin is None:
        sys.stdin = open(os.devnull)  # noqa: SIM115 - for the life of the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    if sys.stdout is None:
        sys.stderr.write("beautyspot: error: standard output is closed (nothing done)\n")
        return 1
    return None


def main() -> None:
    code = _closed_streams()
    if code is not None:
        sys.exit(code)
    if os.environ.get("_BEAUTYSPOT_COMPLETE"):
        from .complete import answer

        code = answer(os.environ)
        if code is not None:
            sys.exit(code)
    elif "show" in sys.argv[1:] and not os.environ.get("BEAUTYSPOT_NO_DIRECT"):
        from .show import direct

        code = direct(sys.argv[1:], os.environ)
        if code is not None:
            sys.exit(code)
    from .app import run

    sys.exit(run())
