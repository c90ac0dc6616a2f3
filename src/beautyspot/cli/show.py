"""``beautyspot show``: one task's metadata, expiry, blob file and decoded preview.

:func:`show_task` is the command itself; the Typer command in :mod:`.app` parses
its options and calls it.  :func:`direct` runs the same function straight from the
console script for the argument forms it recognises, without importing Typer,
Click or the maintenance engine: ``show`` is typed often and otherwise spends most
of its time starting up.  Any other form (``--help``, an unknown option, two keys,
``--``, a value Typer would reject) returns None and goes to the Typer app, which
then gives the same result, or its usual error, more slowly.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from ..errors import BeautySpotError, UsageError
from .common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, display_ts, exit_code_for, now_from_env
from .render import Output, format_bytes, safe_text

DEFAULT_WORKSPACE = Path(".beautyspot")
AMBIGUOUS_SHOWN = 20


def show_task(
    key: str,
    *,
    workspace: Path,
    db: str | None,
    json: bool,
    raw: bool,
    timeout: float,
    blobs: str | None = None,
    workspace_given: bool = False,
) -> int:
    """Print the task *key* (or the one task whose key starts with it); return the exit
    status: 0, 1 when a DB was skipped, 2 when the key is ambiguous."""
    from .. import lookup
    from ..workspace import discover

    if not key:
        raise UsageError("KEY must not be empty")
    from .common import resolve_db

    out = Output(json_mode=json)
    db, blobs = resolve_db(db, blobs, workspace_given=workspace_given)
    ws = discover(workspace, db, blobs)
    now = now_from_env()
    matches, failures = lookup.find_tasks(ws, key, timeout=timeout)
    for f in failures:
        out.error(f"skipped {f.db}: {f.message}")
    if not matches:
        raise BeautySpotError(f"no task matches {key!r}")
    if len(matches) > 1:
        out.error(f"{key!r} matches {len(matches)} tasks; give more of the key:")
        if out.json_mode:
            out.json(
                {
                    "error": "ambiguous",
                    "candidates": [{"db": e.name, "cache_key": k} for e, k in matches],
                }
            )
        else:
            for entry, k in matches[:AMBIGUOUS_SHOWN]:
                out.line(f"  {safe_text(k)}  ({safe_text(entry.name)})")
        return EXIT_USAGE
    entry, full_key = matches[0]
    detail = lookup.load_detail(entry, full_key, now, timeout)
    if raw:
        if detail.payload is None:
            raise BeautySpotError(detail.blob_error or "task has no payload")
        sys.stdout.buffer.write(detail.payload)
        sys.stdout.flush()
        return EXIT_OK
    from ..serializer import decode_preview

    preview, decode_error = (
        decode_preview(detail.payload) if detail.payload is not None else ("", None)
    )
    r = detail.row
    state = {True: "expired", False: "live", None: "no expiry"}[detail.expired]
    if r.expires_at is not None and detail.expired is None:
        state = "unparsable expiry (kept)"
    if out.json_mode:
        out.json(
            {
                "db": detail.db,
                "cache_key": r.cache_key,
                "func_name": r.func_name,
                "function": r.function,
                "version": r.version,
                "result_type": r.result_type,
                "result_value": r.result_value,
                "updated_at": r.updated_at,
                "expires_at": r.expires_at,
                "state": state,
                "blob_path": detail.blob_path,
                "blob_bytes": detail.blob_size,
                "blob_error": detail.blob_error,
                "payload_bytes": None if detail.payload is None else len(detail.payload),
                "preview": preview,
                "decode_error": decode_error,
            }
        )
    else:
        out.kv(
            [
                ("key", r.cache_key),
                ("db", f"{detail.db} ({detail.db_path})"),
                ("function", r.function),
                ("version", r.version),
                ("type", r.result_type),
                ("updated", display_ts(r.updated_at)),
                ("expires", display_ts(r.expires_at) or "never"),
                ("state", state),
                ("blob", detail.blob_path or r.result_value or "-"),
                (
                    "size",
                    format_bytes(None if detail.payload is None else len(detail.payload)),
                ),
            ]
        )
        if detail.blob_error:
            out.warn(detail.blob_error)
        if decode_error:
            out.warn(f"payload does not decode: {decode_error}")
        out.line("preview:")
        for line in preview.splitlines() or [""]:
            out.line("  " + safe_text(line))
    return EXIT_FAILURE if failures else EXIT_OK


# --------------------------------------------------------------------------- direct path

_VALUE_OPTIONS = {"-w": "workspace", "--workspace": "workspace", "--db": "db", "--blobs": "blobs"}


def parse_direct(argv: list[str], environ: Mapping[str, str]) -> dict | None:
    """The options of ``[ROOT OPTIONS] show KEY [OPTIONS]`` when every token is a form
    this parser knows for certain means the same to the Typer app; else None.

    Precedence is the app's: an option after ``show`` over one before it, over
    ``BEAUTYSPOT_WORKSPACE``, over ``./.beautyspot``.
    """
    root: dict = {"json": False, "timeout": 30.0}
    cmd: dict = {"json": False, "raw": False}
    keys: list[str] = []
    scope = root
    tokens = iter(argv)
    for tok in tokens:
        if scope is root and tok == "show":
            scope = cmd
            continue
        if not tok.startswith("-"):
            if scope is root:
                return None  # another command
            keys.append(tok)
            continue
        name, eq, value = tok.partition("=")
        if name in _VALUE_OPTIONS and not (eq and name == "-w"):
            if not eq:
                value = next(tokens, None)
                if value is None:
                    return None
            if not value:
                return None  # Typer's error message for an empty value
            scope[_VALUE_OPTIONS[name]] = value
        elif tok == "--json":
            scope["json"] = True
        elif tok == "--raw" and scope is cmd:
            cmd["raw"] = True
        elif name == "--timeout" and scope is root:
            if not eq:
                value = next(tokens, None)
            if value is None or not value.replace(".", "", 1).isdigit():
                return None  # let Typer validate and word the error
            root["timeout"] = float(value)
        else:
            return None  # --help, --version, -wDIR, --, unknown options
    if scope is not cmd or len(keys) != 1 or not keys[0]:
        return None
    env_ws = environ.get("BEAUTYSPOT_WORKSPACE")
    if env_ws == "":
        return None
    workspace = cmd.get("workspace") or root.get("workspace") or env_ws
    return {
        "key": keys[0],
        "workspace": Path(workspace) if workspace else DEFAULT_WORKSPACE,
        "workspace_given": bool(workspace),
        "db": cmd.get("db") or root.get("db"),
        "blobs": cmd.get("blobs") or root.get("blobs"),
        "json": root["json"] or cmd["json"],
        "raw": cmd["raw"],
        "timeout": root["timeout"],
    }


def direct(argv: list[str], environ: Mapping[str, str]) -> int | None:
    """Run ``show`` without the Typer app when :func:`parse_direct` accepts *argv*;
    return its exit status, or None to let the app handle *argv*."""
    opts = parse_direct(argv, environ)
    if opts is None:
        return None
    try:
        code = show_task(**opts)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at exit
        return code
    except BaseException as exc:  # noqa: BLE001 - mapped to one line + exit code
        return exit_code_for(exc, Output(json_mode=False))
