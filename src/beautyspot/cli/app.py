"""The ``beautyspot`` command: thin Typer commands over :mod:`beautyspot.maintenance`.

Each command parses its options, asks the core for a report or a plan, renders it
through :class:`~beautyspot.cli.render.Output`, confirms, executes.  Errors become
one line on stderr and an exit code in :func:`run` alone: 0 ok, 1 failure (a DB
that cannot be read, a lock held, a file that could not be deleted), 2 usage
(bad arguments, refusing to delete without ``--yes`` off a terminal, an
ambiguous key).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from .. import __version__
from .. import maintenance as mt
from ..errors import UsageError
from ..timeutil import (
    parse_cutoff,
    parse_duration,
    parse_size,
)
from ..workspace import Workspace, discover
from .common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    display_ts,
    exit_code_for,
    now_from_env,
    resolve_db,
    split_password,
)
from .render import Output, _isatty, format_bytes, safe_text
from .show import DEFAULT_WORKSPACE, show_task

app = typer.Typer(
    name="beautyspot",
    help="Inspect and maintain beautyspot task DBs and blob files (a .beautyspot workspace).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class State:
    """Options given before the command; a command's own options override them."""

    workspace: Path = DEFAULT_WORKSPACE
    workspace_given: bool = False
    db: str | None = None
    blobs: str | None = None
    json: bool = False
    timeout: float = 30.0


STATE = State()


def _workspace_path(value: str) -> Path:
    """``--workspace ''`` (e.g. an unset shell variable) is an error, not the current
    directory (``Path('')`` is ``.``)."""
    if not value:
        raise typer.BadParameter("must not be empty", param_hint="'--workspace'")
    return Path(value)


WorkspaceRootOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        parser=_workspace_path,
        metavar="DIR",
        envvar="BEAUTYSPOT_WORKSPACE",
        show_envvar=True,
        help="Workspace directory [default: ./.beautyspot].",
    ),
]
# A command's own --workspace has no envvar: an explicit `beautyspot -w DIR CMD` must
# beat BEAUTYSPOT_WORKSPACE, which only the root option reads.
WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        parser=_workspace_path,
        metavar="DIR",
        help="Workspace directory [default: $BEAUTYSPOT_WORKSPACE, else ./.beautyspot].",
    ),
]
DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Act on this one task DB (a path, or a DB name in the workspace)."),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (schema in the README).")
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", "-n", help="Show what would be deleted; delete nothing.")
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
BlobsRootOpt = Annotated[
    str | None,
    typer.Option(
        "--blobs",
        metavar="s3://BUCKET/PREFIX|DIR",
        help="Blob store of a postgresql:// --db (S3, or a directory the workers share)"
        " [default: $BEAUTYSPOT_BLOBS].",
    ),
]
BlobsOpt = Annotated[
    str | None,
    typer.Option(
        "--blobs",
        metavar="s3://BUCKET/PREFIX|DIR",
        help="Blob store of a postgresql:// --db [default: $BEAUTYSPOT_BLOBS].",
    ),
]
FuncOpt = Annotated[
    str | None,
    typer.Option("--func", "-f", help="Only tasks of this function (short or qualified name)."),
]


def _finite(value: float) -> float:
    """Reject nan and inf, which pass ``min=0.0`` (every comparison with nan is false)."""
    import math

    if not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number of seconds")
    return value


def _version(value: bool) -> None:
    if value:
        print(f"beautyspot {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    workspace: WorkspaceRootOpt = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Act on this one task DB (a path, a DB name in the workspace, or a"
            " postgresql:// URL) [default: $BEAUTYSPOT_DB].",
        ),
    ] = None,
    blobs: BlobsRootOpt = None,
    json: JsonOpt = False,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            min=0.0,
            callback=_finite,
            help="Seconds to wait for a locked DB or workspace lock.",
        ),
    ] = 30.0,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Maintain a beautyspot workspace: list, inspect, expire, prune and clear cached tasks.

    Exit status: 0 success, 1 failure (unreadable DB, lock held, I/O error),
    2 usage error (bad argument, refused without --yes, ambiguous key).
    """
    # Reset every field: run() may be called more than once in one process.
    STATE.workspace = workspace if workspace is not None else DEFAULT_WORKSPACE
    STATE.workspace_given = workspace is not None  # -w or $BEAUTYSPOT_WORKSPACE
    STATE.db = db
    STATE.blobs = blobs
    STATE.json = json
    STATE.timeout = timeout


def _setup(
    workspace: Path | None, db: str | None, json: bool, blobs: str | None = None
) -> tuple[Workspace, Output, dt.datetime]:
    if workspace is not None:
        STATE.workspace = workspace
        STATE.workspace_given = True
    if db is not None:
        STATE.db = db
    if blobs is not None:
        STATE.blobs = blobs
    STATE.json = STATE.json or json
    out = Output(json_mode=STATE.json)
    STATE.db, STATE.blobs = resolve_db(
        STATE.db, STATE.blobs, workspace_given=STATE.workspace_given
    )
    ws = discover(STATE.workspace, STATE.db, STATE.blobs)
    return ws, out, now_from_env()


def _failures_json(failures) -> list[dict]:
    return [f._asdict() for f in failures]  # DBFailure is a named tuple


def _report_failures(out: Output, failures) -> int:
    for f in failures:
        out.error(f"skipped {f.db}: {f.message}")
    return EXIT_FAILURE if failures else EXIT_OK


# --------------------------------------------------------------------------- ls


@app.command("ls")
def ls_cmd(
    db_arg: Annotated[
        str | None, typer.Argument(metavar="[DB]", help="List this DB's tasks.")
    ] = None,
    func: FuncOpt = None,
    expired: Annotated[bool, typer.Option("--expired", help="Only expired tasks.")] = False,
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Only tasks updated before DURATION ago or a DATE."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000_000, help="At most this many tasks.")
    ] = 50,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print bare cache keys, one per line.")
    ] = False,
    workspace: WorkspaceOpt = None,
    db: DbOpt = None,
    blobs: BlobsOpt = None,
    json: JsonOpt = False,
) -> None:
    """List the workspace's DBs, or the tasks of one DB (with filters)."""
    ws, out, now = _setup(workspace, db_arg or db, json, blobs)
    if not ws.single_db:
        if func or expired or older_than or quiet:
            raise UsageError("--func, --expired, --older-than and -q need a DB (ls DB or --db)")
        _ls_workspace(ws, out, now)
        return
    from ..sql import RowFilter
    from ..timeutil import to_instant

    cutoff = parse_cutoff(older_than, now) if older_than else None
    rfilter = RowFilter(
        expired_before=to_instant(now) if expired else None,
        updated_before=to_instant(cutoff) if cutoff else None,
        func=func,
    )
    entry = ws.dbs[0]
    rows = mt.iter_tasks(entry, rfilter, limit, STATE.timeout)
    if quiet and out.json_mode:
        out.json({"db": entry.name, "path": str(entry.path), "keys": [r.cache_key for r in rows]})
        return
    if quiet:
        # For pipes (`| beautyspot rm -`): a key is printed as it is, or not at all.  One
        # with control characters or bytes that are not UTF-8 would print escaped, and
        # its escaped text may be another task's key.
        hidden = 0
        for r in rows:
            key = r.cache_key
            if type(key) is str and key and "\n" not in key and safe_text(key) == key:
                out.line(key)
            else:
                hidden += 1
        if hidden:
            out.warn(
                f"{hidden} keys not printed: they cannot be written one per line as they"
                " are (control characters, invalid UTF-8, empty); --json lists them"
            )
        return
    if out.json_mode:
        out.json(
            {
                "db": entry.name,
                "path": str(entry.path),
                "tasks": [
                    {
                        "cache_key": r.cache_key,
                        "function": r.function,
                        "result_type": r.result_type,
                        "result_value": r.result_value,
                        "data_bytes": r.data_size,
                        "updated_at": r.updated_at,
                        "expires_at": r.expires_at,
                        "version": r.version,
                    }
                    for r in rows
                ],
            }
        )
        return
    from ..timeutil import parse_instant
    from ..timeutil import to_instant as ti

    now_i = ti(now)

    def state(r) -> str:
        exp = parse_instant(r.expires_at)
        if r.expires_at is None:
            return "live"
        if exp is None:
            return "bad expiry"
        return "expired" if exp < now_i else "live"

    out.table(
        f"{entry.name}: {len(rows)} task(s) shown, newest first",
        ["key", "function", "type", "bytes", "updated (UTC)", "expires (UTC)", "state"],
        [
            [
                r.cache_key,
                r.function,
                r.result_type,
                format_bytes(r.data_size) if r.data_size is not None else r.result_value,
                display_ts(r.updated_at),
                display_ts(r.expires_at),
                state(r),
            ]
            for r in rows
        ],
        max_col_width=64,
    )


def _ls_workspace(ws: Workspace, out: Output, now: dt.datetime) -> None:
    summaries = mt.summarize(ws, now, STATE.timeout)
    failures = [s for s in summaries if s.error]
    if out.json_mode:
        out.json(
            {
                "workspace": str(ws.root),
                "now": now.isoformat(),
                "dbs": [asdict(s) for s in summaries],
                "zombies": [{"name": z.name, "path": str(z.path)} for z in ws.zombies],
            }
        )
    else:
        out.table(
            f"workspace {ws.root}",
            ["db", "tasks", "db size", "blobs", "blob bytes", "expired", "oldest", "newest"],
            [
                [
                    s.name,
                    s.tasks if s.tasks >= 0 else "unreadable",
                    format_bytes(s.db_bytes),
                    s.blob_files,
                    format_bytes(s.blob_bytes),
                    "" if s.expired is None else s.expired,
                    s.oldest or "",
                    s.newest or "",
                ]
                for s in summaries
            ],
        )
        for z in ws.zombies:
            out.line(f"zombie blob dir (no DB): {safe_text(z.path)}")
    for s in failures:
        out.error(f"{s.name}: {s.error}")
    if failures:
        raise typer.Exit(EXIT_FAILURE)


# --------------------------------------------------------------------------- show


@app.command("show")
def show_cmd(
    key: Annotated[str, typer.Argument(help="A cache key, or a unique prefix of one.")],
    raw: Annotated[
        bool, typer.Option("--raw", help="Write the raw payload bytes to stdout.")
    ] = False,
    workspace: WorkspaceOpt = None,
    db: DbOpt = None,
    blobs: BlobsOpt = None,
    json: JsonOpt = False,
) -> None:
    """Show one task: metadata, expiry, blob file and a decoded preview."""
    if workspace is not None:
        STATE.workspace = workspace
        STATE.workspace_given = True
    if db is not None:
        STATE.db = db
    if blobs is not None:
        STATE.blobs = blobs
    code = show_task(
        key,
        workspace=STATE.workspace,
        workspace_given=STATE.workspace_given,
        db=STATE.db,
        blobs=STATE.blobs,
        json=STATE.json or json,
        raw=raw,
        timeout=STATE.timeout,
    )
    raise typer.Exit(code)


# --------------------------------------------------------------------------- plans


def _plan_json(plan: mt.Plan, result: mt.Result | None) -> dict:
    src = result if result is not None else plan
    return {
        "command": plan.command,
        "dry_run": result is None,
        "now": plan.now.isoformat(),
        "cutoff": plan.cutoff.isoformat() if plan.cutoff else None,
        "grace_seconds": plan.grace_seconds,
        "func": plan.func,
        "totals": {"rows": src.rows, "files": src.files, "bytes": src.bytes},
        "groups": [asdict(g) for g in src.groups],
        "oldest": [
            {"db": d.name, "cache_key": k, "function": f, "updated_at": u}
            for d in plan.dbs
            for k, f, u in d.oldest
        ],
        "warnings": [w for d in plan.dbs for w in d.warnings],
        "kept": [{"path": p, "why": w} for p, w in (result.kept if result else ())],
        "errors": _failures_json(result.failures if result else plan.failures),
    }


def _render_groups(out: Output, title: str, groups: list[mt.Group]) -> None:
    out.table(
        title,
        ["db", "function", "reason", "tasks", "blob files", "bytes"],
        [[g.db, g.function, g.reason, g.rows, g.files, format_bytes(g.bytes)] for g in groups],
        justify={"tasks": "right", "blob files": "right", "bytes": "right"},
    )


def _render_plan(out: Output, plan: mt.Plan) -> None:
    _render_groups(
        out, f"{plan.command} --dry-run (now {plan.now:%Y-%m-%d %H:%M:%S} UTC)", plan.groups
    )
    oldest = [(d.name, k, f, u) for d in plan.dbs for k, f, u in d.oldest]
    if oldest:
        out.table(
            "oldest entries",
            ["db", "key", "function", "updated (UTC)"],
            [[db, k, f, display_ts(u)] for db, k, f, u in oldest[: mt.OLDEST_SHOWN]],
            max_col_width=64,
        )
    for d in plan.dbs:
        for w in d.warnings:
            out.warn(f"{d.name}: {w}")
    out.line(
        f"would delete {plan.rows} tasks and {plan.files} blob files,"
        f" freeing {format_bytes(plan.bytes)}"
    )


def _run_plan(
    plan: mt.Plan,
    ws: Workspace,
    out: Output,
    dry_run: bool,
    *,
    audit: bool = True,
    report: bool = False,
) -> None:
    if dry_run:
        if out.json_mode:
            out.json(_plan_json(plan, None))
        else:
            _render_plan(out, plan)
        raise typer.Exit(_report_failures(out, plan.failures))
    total = plan.rows + plan.files
    with out.progress(total or None, f"{plan.command}: deleting") as bar:
        result = mt.execute(
            plan,
            ws,
            progress=bar.advance,
            timeout=STATE.timeout,
            lock_wait=STATE.timeout,
            audit=audit,
        )
    if out.json_mode:
        out.json(_plan_json(plan, result))
    elif report:
        _render_report(out, plan, result, ws)
    else:
        _render_groups(out, f"{plan.command}: deleted", list(result.groups))
        for path, why in result.kept:
            out.warn(f"kept {path}: {why}")
        for d in plan.dbs:
            for w in d.warnings:
                out.warn(f"{d.name}: {w}")
        out.line(
            f"deleted {result.rows} tasks and {result.files} blob files,"
            f" freed {format_bytes(result.bytes)}"
        )
    raise typer.Exit(_report_failures(out, result.failures))


def _render_report(out: Output, plan: mt.Plan, result: mt.Result, ws: Workspace) -> None:
    """A few plain lines for cron mail: what went, per reason; what was kept or skipped."""
    by_reason: dict[str, list[int]] = {}
    for g in result.groups:
        tally = by_reason.setdefault(g.reason, [0, 0, 0])
        tally[0] += g.rows
        tally[1] += g.files
        tally[2] += g.bytes
    out.line(f"beautyspot {plan.command} report: {ws.root} at {plan.now:%Y-%m-%d %H:%M:%S} UTC")
    out.line(
        f"deleted {result.rows} tasks and {result.files} blob files,"
        f" freed {format_bytes(result.bytes)}"
    )
    for reason, (rows, files, nbytes) in sorted(by_reason.items()):
        out.line(f"  {reason}: {rows} tasks, {files} files, {format_bytes(nbytes)}")
    warnings = [f"{d.name}: {w}" for d in plan.dbs for w in d.warnings] + list(plan.warnings)
    out.line(
        f"kept {len(result.kept)} planned files that changed; {len(result.failures)} DBs"
        f" skipped; {len(warnings)} warnings"
    )
    for path, why in result.kept[:10]:
        out.line(f"  kept {safe_text(path)}: {why}")
    for w in warnings[:10]:
        out.line(f"  warning: {safe_text(w)}")


def _confirm_or_refuse(out: Output, yes: bool, dry_run: bool, what: str) -> None:
    """Off a terminal, destructive commands need --yes (checked before any work)."""
    if yes or dry_run:
        return
    if not _isatty(sys.stdin):
        raise UsageError(
            f"refusing to {what} without --yes: stdin is not a terminal (nothing deleted)"
        )


def _ask_then_run(
    plan: mt.Plan, ws: Workspace, out: Output, dry_run: bool, yes: bool, *, audit: bool
) -> None:
    """prune, clear, rm: confirm on a terminal (unless --yes or a dry run), then run."""
    if not dry_run:
        _ask(out, plan, yes)
    _run_plan(plan, ws, out, dry_run, audit=audit)


def _ask(out: Output, plan: mt.Plan, yes: bool) -> None:
    if yes:
        return
    _render_plan(out, plan)
    if not out.confirm(f"Delete {plan.rows} tasks and {plan.files} blob files?"):
        out.line("nothing deleted")
        raise typer.Exit(EXIT_OK)


NoAuditOpt = Annotated[
    bool,
    typer.Option(
        "--no-audit-log", help="Do not append deleted tasks and files to maintenance.log.jsonl."
    ),
]


@app.command("gc")
def gc_cmd(
    grace: Annotated[
        str,
        typer.Option("--grace", help="Keep orphan and temp files younger than this (e.g. 1h)."),
    ] = "1h",
    dry_run: DryRunOpt = False,
    no_orphans: Annotated[
        bool, typer.Option("--no-orphans", help="Keep orphan blobs, temp files, zombie dirs.")
    ] = False,
    no_expired: Annotated[bool, typer.Option("--no-expired", help="Keep expired tasks.")] = False,
    max_size: Annotated[
        str | None,
        typer.Option(
            "--max-size",
            help="Then evict least recently updated tasks until payloads total at most SIZE"
            " (500MB, 2GiB).",
        ),
    ] = None,
    max_entries: Annotated[
        int | None,
        typer.Option(
            "--max-entries", min=0, help="Then evict least recently updated tasks beyond N."
        ),
    ] = None,
    per_db: Annotated[
        bool, typer.Option("--per-db", help="Apply --max-size/--max-entries to each DB.")
    ] = False,
    report: Annotated[
        bool, typer.Option("--report", help="Print a short plain summary (for cron mail).")
    ] = False,
    no_audit_log: NoAuditOpt = False,
    yes: YesOpt = False,
    workspace: WorkspaceOpt = None,
    db: DbOpt = None,
    blobs: BlobsOpt = None,
    json: JsonOpt = False,
) -> None:
    """Delete expired tasks, orphan blobs, stale temp files and zombie dirs. Never prompts.

    With --max-size/--max-entries, then evict the least recently updated tasks (across
    the workspace, or per DB with --per-db) until under budget.
    """
    grace_td = parse_duration(grace, allow_zero=True)
    budget = None
    if max_size is not None or max_entries is not None:
        budget = mt.Budget(
            parse_size(max_size) if max_size is not None else None, max_entries, per_db
        )
    elif per_db:
        raise UsageError("--per-db goes with --max-size or --max-entries")
    ws, out, now = _setup(workspace, db, json, blobs)
    plan = mt.plan_gc(
        ws,
        now,
        grace_td,
        expired=not no_expired,
        orphans=not no_orphans,
        budget=budget,
        timeout=STATE.timeout,
    )
    _run_plan(plan, ws, out, dry_run, audit=not no_audit_log, report=report)


@app.command("prune")
def prune_cmd(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", help="Delete tasks last updated before DURATION ago (30d) or a DATE."
        ),
    ],
    func: FuncOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    no_audit_log: NoAuditOpt = False,
    workspace: WorkspaceOpt = None,
    db: DbOpt = None,
    blobs: BlobsOpt = None,
    json: JsonOpt = False,
) -> None:
    """Delete tasks last updated before a cutoff, and their blob files."""
    parse_cutoff(older_than, now_from_env())  # a bad --older-than is reported before anything else
    ws, out, now = _setup(workspace, db, json, blobs)
    cutoff = parse_cutoff(older_than, now)  # from the one `now` the plan uses
    _confirm_or_refuse(out, yes, dry_run, "prune")
    plan = mt.plan_prune(ws, now, cutoff, func, timeout=STATE.timeout)
    _ask_then_run(plan, ws, out, dry_run, yes, audit=not no_audit_log)


@app.command("clear")
def clear_cmd(
    func: FuncOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    no_audit_log: NoAuditOpt = False,
    workspace: WorkspaceOpt = None,
    db: DbOpt = None,
    blobs: BlobsOpt = None,
    json: JsonOpt = False,
) -> None:
    """Delete all tasks (or all of one function) and their blob files."""
    ws, out, now = _setup(workspace, db, json, blobs)
    _confirm_or_refuse(out, yes, dry_run, "clear")
    plan = mt.plan_clear(ws, now, func, timeout=STATE.timeout)
    _ask_then_run(plan, ws, out, dry_run, yes, audit=not no_audit_log)


@app.command("rm")
def rm_cmd(
    keys: Annotated[
        list[str],
        typer.Argument(
            metavar="KEY|PREFIX...",
            help="Cache keys or unique prefixes; '-' reads keys from stdin, one per line.",
        ),
    ],
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    no_audit_log: NoAuditOpt = False,
    workspace: WorkspaceOpt = None,
    db: DbOpt = None,
    blobs: BlobsOpt = None,
    json: JsonOpt = False,
) -> None:
    """Delete specific tasks (by key or unique prefix) and their blob files.

    Every argument must resolve before anything is deleted: an unknown key fails
    (exit 1), an ambiguous prefix lists its candidates (exit 2).
    """
    wanted: list[str] = []
    for arg in keys:
        if arg == "-":
            # Only the line ending goes: a key may begin or end with spaces (` abc` and
            # `abc` are two tasks), and what `ls -q` prints is each key as it is.
            for line in sys.stdin:
                key = line[:-1] if line.endswith("\n") else line
                key = key[:-1] if key.endswith("\r") else key
                if key:
                    wanted.append(key)
        else:
            wanted.append(arg)
    if not wanted:
        raise UsageError("no keys given")
    ws, out, now = _setup(workspace, db, json, blobs)
    _confirm_or_refuse(out, yes, dry_run, "rm")
    try:
        by_db, failures = mt.resolve_keys(ws, wanted, STATE.timeout)
    except mt.AmbiguousKeyError as exc:
        out.error(str(exc))
        if out.json_mode:
            out.json(
                {
                    "error": "ambiguous",
                    "prefix": exc.prefix,
                    "candidates": [{"db": d, "cache_key": k} for d, k in exc.candidates],
                }
            )
        else:
            for d, k in exc.candidates[:20]:
                out.line(f"  {safe_text(k)}  ({safe_text(d)})")
        raise typer.Exit(EXIT_USAGE) from None
    plan = mt.plan_rm(ws, now, by_db, timeout=STATE.timeout)
    # A DB that could not be searched fails the run (exit 1), as for gc: the keys found
    # elsewhere are still deleted.
    plan = dataclasses.replace(plan, failures=(*failures, *plan.failures))
    _ask_then_run(plan, ws, out, dry_run, yes, audit=not no_audit_log)


@app.command("verify")
def verify_cmd(
    fix: Annotated[
        bool,
        typer.Option(
            "--fix", help="Delete dangling rows and collect orphans past --grace (as gc)."
        ),
    ] = False,
    full: Annotated[
        bool, typer.Option("--full", help="PRAGMA integrity_check instead of quick_check.")
    ] = False,
    grace: Annotated[
        str, typer.Option("--grace", help="Orphan and temp files younger than this are fine.")
    ] = "1h",
    dry_run: DryRunOpt = False,
    no_audit_log: NoAuditOpt = False,
    yes: YesOpt = False,  # accepted, as by gc: --fix never prompts
    workspace: WorkspaceOpt = None,
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """Check every DB and blob dir; exit 1 when anything is wrong. --fix repairs.

    Checks: SQLite quick_check (--full: integrity_check), FILE rows whose blob is
    missing (dangling), unsafe blob locations, orphan blobs and stale temp files past
    the grace period, unparsable timestamps, payloads that do not decode.
    """
    grace_td = parse_duration(grace, allow_zero=True)
    ws, out, now = _setup(workspace, db, json)
    report = mt.verify(ws, now, grace_td, full=full, timeout=STATE.timeout)
    if fix:
        plan = mt.plan_verify_fix(ws, now, report, grace_td, timeout=STATE.timeout)
        _run_plan(plan, ws, out, dry_run, audit=not no_audit_log)
    if out.json_mode:
        out.json(
            {
                "ok": report.ok,
                "checks": [asdict(c) for c in report.checks],
                "errors": _failures_json(report.failures),
            }
        )
    else:
        out.table(
            f"verify {ws.root}",
            ["db", "check", "problems", "example"],
            [[c.db, c.check, c.problems, c.example] for c in report.checks],
            justify={"problems": "right"},
            max_col_width=64,
        )
        bad = sum(1 for c in report.checks if c.problems)
        out.line("all checks passed" if report.ok else f"{bad} checks found problems")
    _report_failures(out, report.failures)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FAILURE)


# --------------------------------------------------------------------------- migrate


@app.command("migrate")
def migrate_cmd(
    source: Annotated[
        str,
        typer.Option(
            "--from", metavar="DB", help="The SQLite task DB to copy (a path, or a DB name)."
        ),
    ],
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="URL",
            envvar="BEAUTYSPOT_DB",
            show_envvar=True,
            help="The target task DB: postgresql://...",
        ),
    ] = None,
    blobs: Annotated[
        str | None,
        typer.Option(
            "--blobs",
            metavar="s3://BUCKET/PREFIX|DIR",
            help="Where the blob files go (needed when the source has FILE rows).",
        ),
    ] = None,
    batch: Annotated[
        int, typer.Option("--batch", min=1, max=100_000, help="Rows per target transaction.")
    ] = 1000,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Count what would be copied; copy nothing.")
    ] = False,
    workspace: WorkspaceOpt = None,
    json: JsonOpt = False,
) -> None:
    """Copy a SQLite task DB and its blobs to PostgreSQL (and S3). Resumable, verified.

    The source is only read. Rows the target already has with the same or a later
    updated_at are kept; the rest are copied with their own updated_at, blobs before
    their rows. Afterwards every copied row and blob is checked; exit 1 when one is
    missing or a row could not be copied (it is listed).
    """
    from .. import migrate as mg
    from ..backends import is_server_url, open_task_db

    if not to:
        raise UsageError("--to is required (or set BEAUTYSPOT_DB): a postgresql:// URL")
    if not is_server_url(to):
        raise UsageError(f"--to must be a postgresql:// URL, not {safe_text(to)}")
    to, password = split_password(to.strip())
    if password is not None:
        os.environ["PGPASSWORD"] = password  # libpq reads it there; reports show `to`
    if is_server_url(source):
        raise UsageError("--from is the SQLite task DB to copy, not a server URL")
    if workspace is not None:
        STATE.workspace = workspace
    STATE.json = STATE.json or json
    out = Output(json_mode=STATE.json)
    entry = discover(STATE.workspace, source).dbs[0]
    store = mg.open_blob_store(blobs, entry.blob_dir) if blobs else None
    if dry_run:  # read only: no table created, no migration run
        from ..pgreader import PostgresReader

        target = PostgresReader(to, STATE.timeout, require_table=False)
        close = target.close
    else:
        target = open_task_db(to, timeout=STATE.timeout)
        close = target.shutdown
    try:
        with out.progress(None, f"copying {entry.name}") as bar:
            report = mg.migrate(
                entry,
                target,
                store,
                target_name=to,
                store_name=blobs,
                dry_run=dry_run,
                batch=batch,
                timeout=STATE.timeout,
                progress=bar.advance,
            )
    finally:
        close()
    if out.json_mode:
        doc = report._asdict()
        doc["skipped_rows"] = [{"cache_key": k, "reason": r} for k, r in report.skipped_rows]
        doc["expected"], doc["ok"] = report.expected, report.ok
        out.json(doc)
    else:
        verb = "would copy" if dry_run else "copied"
        out.kv(
            [
                ("source", report.source),
                ("target", report.target),
                ("blobs", report.blobs or "-"),
                ("rows in source", report.rows),
                (f"rows {verb}", report.copied),
                ("rows already there", report.present),
                ("dangling rows (blob missing, not copied)", report.dangling),
                (f"blobs {verb}", report.blobs_copied),
                ("blobs already there", report.blobs_present),
                ("rows that cannot be copied", report.skipped),
            ]
        )
        for key, reason in report.skipped_rows:
            out.warn(f"not copied: {safe_text(key)}: {reason}")
        if report.skipped > len(report.skipped_rows):
            out.warn(f"... and {report.skipped - len(report.skipped_rows)} more rows not copied")
        if not dry_run:
            out.line(
                f"verified: {report.verified} of {report.expected} rows in the target"
                + (f", {report.missing} MISSING" if report.missing else "")
            )
    if report.missing:
        out.error(f"{report.missing} rows or blobs are not in the target after copying")
    if report.skipped:
        out.error(f"{report.skipped} rows could not be copied (listed above)")
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FAILURE)


# --------------------------------------------------------------------------- entry


def run(argv: list[str] | None = None) -> int:
    """Run the app; map every error to one line and an exit code (the only place)."""
    from typer.exceptions import Abort, TyperException

    err = Output(json_mode=False)
    try:
        rc = app(args=argv, prog_name="beautyspot", standalone_mode=False)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at exit
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":
            return EXIT_OK  # Typer's answer to a closed pipe: the reader left, not an error
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    except Abort:
        err.error("aborted")
        return EXIT_FAILURE
    except TyperException as exc:  # Click's usage errors and the like
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message())
            return EXIT_USAGE
        err.error(" ".join(exc.format_message().split()))
        return exc.exit_code
    except Exception as exc:  # BeautySpotError, OSError, a bug: one line, an exit code
        return exit_code_for(exc, err)
    except KeyboardInterrupt as exc:
        return exit_code_for(exc, err)
    return rc if isinstance(rc, int) else EXIT_OK


def main() -> None:
    sys.exit(run())
