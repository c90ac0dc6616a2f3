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


def main() -> None:
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
