#!/usr/bin/env python3
"""Generate the files derived from the Typer app, or check that they are current.

    python scripts/gen_artifacts.py --update   # rewrite them
    python scripts/gen_artifacts.py --check    # exit 1 listing the stale ones (CI)

From ``typer.main.get_command(app)`` (walked here: Typer >= 0.26 carries its own copy of
Click, so Click tools such as click-man do not see the app):

* ``completions/beautyspot.{bash,zsh,fish}``: the scripts Typer itself installs
  (``beautyspot --show-completion``), for prog ``beautyspot`` and ``_BEAUTYSPOT_COMPLETE``;
* ``man/beautyspot.1`` and ``man/beautyspot-<command>.1`` for every command (roff);
* ``src/beautyspot/cli/_completion_table.py``: the commands, options and arguments the
  completion fast path (``beautyspot.cli.complete``) parses a command line with.

Man pages are dated from ``SOURCE_DATE_EPOCH`` (UTC), or :data:`DEFAULT_DATE` when it is
unset, so the output depends only on the source.
"""

from __future__ import annotations

import argparse
import datetime as dt
import enum
import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROG = "beautyspot"
COMPLETE_VAR = "_BEAUTYSPOT_COMPLETE"
SHELLS = ("bash", "zsh", "fish")
TABLE = Path("src/beautyspot/cli/_completion_table.py")
DEFAULT_DATE = dt.date(2026, 1, 1)  # man page date when SOURCE_DATE_EPOCH is unset

# Parameters whose values the fast path completes from the workspace, by parameter name.
# "workspace" and "dbs" values on the line also choose where keys and functions come from.
DYNAMIC = {
    "key": "keys",
    "keys": "keys",
    "cache_key": "keys",
    "func": "functions",
    "db": "dbs",
    "db_arg": "dbs",
    "workspace": "workspace",
}

# --------------------------------------------------------------------------- the app


@dataclass
class Param:
    kind: str  # "option" or "argument"
    name: str
    opts: tuple[str, ...]  # option names, secondary (--no-x) ones included
    nargs: int  # values an option takes (0: a flag); an argument's nargs (-1: any)
    multiple: bool
    hidden: bool
    required: bool
    help: str | None
    record: tuple[str, str] | None  # Click's help record: ("-w, --workspace <path>", help)
    metavar: str
    complete: str | None
    choices: tuple[str, ...] | None
    case_sensitive: bool


@dataclass
class Command:
    path: tuple[str, ...]  # () for the root group
    help: str
    short_help: str
    hidden: bool
    epilog: str
    params: list[Param]
    commands: list[Command] = field(default_factory=list)
    group: bool = False

    @property
    def key(self) -> str:
        return " ".join(self.path)

    @property
    def options(self) -> list[Param]:
        return [p for p in self.params if p.kind == "option"]

    @property
    def arguments(self) -> list[Param]:
        return [p for p in self.params if p.kind == "argument"]


def load_cli():
    """The Click command of the app in this checkout."""
    os.environ.pop("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", None)  # changes params
    sys.path.insert(0, str(ROOT / "src"))
    import typer.main

    from beautyspot.cli.app import app

    return typer.main.get_command(app)


def _choices(param) -> tuple[tuple[str, ...] | None, bool]:
    desc = getattr(param, "type_descriptor", None)
    choices = getattr(desc, "choices", None)
    if not choices:
        return None, True
    as_str = tuple(str(c.value) if isinstance(c, enum.Enum) else str(c) for c in choices)
    return as_str, bool(getattr(desc, "case_sensitive", True))


def _metavar(param, record: tuple[str, str] | None) -> str:
    if param.param_type_name == "argument":
        name = param.metavar or param.name.upper()
        if param.metavar is None and not param.required:
            name = f"[{name}]"
        return name + ("..." if param.nargs == -1 and param.metavar is None else "")
    if param.metavar:
        return param.metavar
    if param.is_flag or param.count:
        return ""
    shown = record[0] if record else ""
    if "<" in shown:  # Typer's "<path>", "<float range>"
        word = shown.partition("<")[2].partition(">")[0].split(" ")[0]
    else:
        word = shown.rpartition(" ")[2] if " " in shown else ""
    word = word.strip("[]").upper() or "VALUE"
    return {"STR": "TEXT", "FLOAT": "NUMBER", "INTEGER": "INT"}.get(word, word)


def _param(param, ctx, help_option=None) -> Param:
    is_option = param.param_type_name == "option"
    record = param.get_help_record(ctx)
    choices, case_sensitive = _choices(param)
    desc = getattr(param, "type_descriptor", None)
    complete = DYNAMIC.get(param.name)
    if complete is None and (getattr(desc, "is_path", False) or getattr(desc, "is_file", False)):
        complete = "path"
    if is_option:
        nargs = 0 if (param.is_flag or param.count) else param.nargs
        opts = (*param.opts, *param.secondary_opts)
        if param is help_option:  # Click builds it from a set: order varies per process
            opts = tuple(sorted(opts, key=lambda n: (len(n), n)))
    else:
        nargs, opts = param.nargs, ()
    return Param(
        kind=param.param_type_name,
        name=param.name,
        opts=tuple(opts),
        nargs=nargs,
        multiple=bool(param.multiple),
        hidden=bool(getattr(param, "hidden", False)),
        required=bool(param.required),
        help=param.help or None,
        record=record,
        metavar=_metavar(param, record),
        complete=complete,
        choices=choices,
        case_sensitive=case_sensitive,
    )


def walk(cmd, path: tuple[str, ...] = (), parent=None) -> Command:
    ctx = cmd.make_context(path[-1] if path else PROG, [], parent=parent, resilient_parsing=True)
    node = Command(
        path=path,
        help=inspect.cleandoc(cmd.help or "").partition("\f")[0],
        short_help=cmd.get_short_help_str(),
        hidden=bool(cmd.hidden),
        epilog=inspect.cleandoc(cmd.epilog or ""),
        params=[_param(p, ctx, cmd.get_help_option(ctx)) for p in cmd.get_params(ctx)],
    )
    if hasattr(cmd, "list_commands"):
        node.group = True
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None:
                node.commands.append(walk(sub, (*path, name), ctx))
    return node


def all_commands(root: Command) -> list[Command]:
    out = [root]
    for sub in root.commands:
        out.extend(all_commands(sub))
    return out


# --------------------------------------------------------------------------- completion


def completion_scripts() -> dict[Path, str]:
    """What ``beautyspot --show-completion`` prints in each shell."""
    from typer.completion import get_completion_script

    return {
        Path("completions") / f"{PROG}.{shell}": get_completion_script(
            prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell
        )
        + "\n"
        for shell in SHELLS
    }


def table_data(root: Command) -> dict[str, dict]:
    """The fast path's table: plain literals, keyed by command path ("" is the root)."""

    def option(p: Param) -> dict:
        return {
            "name": p.name,
            "opts": p.opts,
            "nargs": p.nargs,
            "multiple": p.multiple,
            "hidden": p.hidden,
            "help": p.help,
            "complete": p.complete,
            "choices": p.choices,
            "case_sensitive": p.case_sensitive,
        }

    def argument(p: Param) -> dict:
        return {
            "name": p.name,
            "nargs": p.nargs,
            "complete": p.complete,
            "choices": p.choices,
            "case_sensitive": p.case_sensitive,
        }

    return {
        c.key: {
            "group": c.group,
            "commands": tuple((s.path[-1], s.short_help or None, s.hidden) for s in c.commands),
            "options": tuple(option(p) for p in c.options),
            "arguments": tuple(argument(p) for p in c.arguments),
        }
        for c in all_commands(root)
    }


def _py_str(s: str) -> str:
    text = repr(s)
    if text.startswith("'") and '"' not in s:  # the quotes ruff format prefers
        text = '"' + text[1:-1].replace("\\'", "'") + '"'
    return text


def _py(value, indent: int) -> str:
    """A literal laid out as ``ruff format`` lays it out (exploded dicts, short tuples)."""
    pad = " " * indent
    if isinstance(value, dict):
        inner = "".join(f"{pad}    {_py_str(k)}: {_py(v, indent + 4)},\n" for k, v in value.items())
        return "{\n" + inner + pad + "}"
    if isinstance(value, tuple):
        if not value:
            return "()"
        flat = [_py(v, indent + 4) for v in value]
        one_line = "(" + ", ".join(flat) + ("," if len(flat) == 1 else "") + ")"
        if "\n" not in one_line and indent + len(one_line) + 12 < 100:
            return one_line
        return "(\n" + "".join(f"{pad}    {v},\n" for v in flat) + pad + ")"
    if isinstance(value, str):
        return _py_str(value)
    return repr(value)


def completion_table(root: Command) -> str:
    return (
        "# ruff: noqa: E501\n"
        '"""Commands, options and arguments of ``beautyspot``, for the completion fast path.\n'
        "\n"
        "Generated by ``scripts/gen_artifacts.py --update`` from the Typer app; do not edit.\n"
        '"""\n'
        "\n"
        f"COMMANDS = {_py(table_data(root), 0)}\n"
    )


# --------------------------------------------------------------------------- man pages


def man_date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc).strftime("%Y-%m-%d")
    return DEFAULT_DATE.isoformat()


def esc(text: str) -> str:
    """Roff-escape running text (one line, no leading control character)."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = " ".join(text.split())
    if text[:1] in (".", "'"):
        text = "\\&" + text
    return text


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


def _and(words: list[str]) -> str:
    return words[0] if len(words) < 2 else ", ".join(words[:-1]) + " and " + words[-1]


def _first_sentence(text: str) -> str:
    first = _paragraphs(text)[0] if text.strip() else ""
    head, dot, _ = first.partition(". ")
    return (head + dot).strip().rstrip(".")


def _opt_head(p: Param) -> str:
    names = ", ".join(f"\\fB{esc(n)}\\fR" for n in sorted(p.opts, key=lambda n: (len(n), n)))
    return names + (f" \\fI{esc(p.metavar)}\\fR" if p.metavar else "")


def _option_help(p: Param) -> str:
    if p.record is not None:
        return p.record[1]
    return p.help or ""


ROOT_DESCRIPTION = [
    "beautyspot maintains a beautyspot workspace: the SQLite task DBs in which the beautyspot"
    " library caches function results, and the blob files beside them. It lists and inspects"
    " tasks, and deletes expired, old or unwanted ones together with their blob files.",
    "Every deleting command first makes a plan: the rows, blob files and bytes it would free,"
    " per DB and function. --dry-run prints the plan; a real run executes exactly the plan it"
    " previewed. Rows are deleted and committed first; a blob file is removed afterwards, and"
    " only if no row references it any more. Orphan blobs younger than a grace period are kept,"
    " since a writer saves a blob before its row.",
    "A DB that cannot be read is reported and skipped, and the command exits 1. beautyspot"
    " never creates, truncates or deletes a DB file. Deleting commands on one workspace are"
    " serialized by a lock file; a second run waits up to --timeout seconds, then says who"
    " holds the lock.",
    "Deleting commands other than gc ask for confirmation on a terminal, and refuse (exit 2,"
    " nothing deleted) when stdin is not a terminal and --yes is absent; gc never prompts and"
    " is safe for cron. --json prints one machine-readable document. Keys, function names and"
    " file names are shown literally.",
]

# Shared sections.  The workspace layout is SPEC §2's.
FILES = [
    (".beautyspot/", "The workspace (default ./.beautyspot; --workspace or BEAUTYSPOT_WORKSPACE)."),
    ("<name>.db, <name>.sqlite", "Task DBs, one per cache; SQLite in WAL mode (-wal, -shm)."),
    ("blobs/<name>/<key>.bin", "Blob files of that DB's FILE rows."),
    ("blobs/<name>/*.spot_tmp", "Temporary files of interrupted atomic writes (removed by gc)."),
    ("<name>/blobs/", "Legacy blob location, used when blobs/<name>/ does not exist."),
    (
        ".beautyspot.lock",
        "Lock file in the workspace: deleting commands on one workspace run one at a time.",
    ),
    (
        "maintenance.log.jsonl",
        "Audit log in the workspace: one JSON line per deleted task or file (rotated to .1).",
    ),
]
ENVIRONMENT = [
    ("BEAUTYSPOT_WORKSPACE", "Workspace directory when --workspace is not given."),
    (
        "BEAUTYSPOT_NOW",
        "An ISO date-time used as the current time (tests, reproducible runs).",
    ),
    (
        COMPLETE_VAR,
        "Set by the shell completion scripts to ask for completions; not for interactive use.",
    ),
]
EXIT_STATUS = [
    ("0", "Success."),
    ("1", "Failure: a DB that cannot be read, a lock held past the timeout, an I/O error."),
    (
        "2",
        "Usage error: a bad argument, a refusal to delete without --yes off a terminal,"
        " an ambiguous key.",
    ),
]
EXAMPLES = {
    (): [
        (
            "Nightly garbage collection from cron (never prompts; --json for the logs):",
            ["0 3 * * * beautyspot -w /srv/app/.beautyspot gc"],
        ),
        (
            "Preview what pruning tasks older than 30 days would delete:",
            ["beautyspot prune --older-than 30d --dry-run"],
        ),
        ("List the DBs of the workspace:", ["beautyspot ls"]),
        ("Install shell completion for the current shell:", ["beautyspot --install-completion"]),
    ],
    ("ls",): [
        ("Every DB of the workspace:", ["beautyspot ls"]),
        (
            "Expired tasks of one function in DB cache:",
            ["beautyspot ls cache --func fetch --expired"],
        ),
        ("Bare cache keys, for scripts:", ["beautyspot ls cache -q --limit 1000"]),
    ],
    ("show",): [
        ("One task, by a unique prefix of its key:", ["beautyspot show 3fa9"]),
        ("Its payload bytes:", ["beautyspot show 3fa9 --raw > payload.bin"]),
    ],
    ("gc",): [
        ("Nightly from cron:", ["0 3 * * * beautyspot -w /srv/app/.beautyspot gc"]),
        ("Preview, keeping orphan blobs younger than a day:", ["beautyspot gc --grace 1d -n"]),
    ],
    ("prune",): [
        (
            "Preview, then delete, tasks older than 30 days:",
            [
                "beautyspot prune --older-than 30d --dry-run",
                "beautyspot prune --older-than 30d --yes",
            ],
        ),
        (
            "One function's tasks written before a date:",
            [
                "beautyspot prune --older-than 2025-06-01 --func fetch_page --yes",
            ],
        ),
    ],
    ("rm",): [
        ("Preview deleting two tasks:", ["beautyspot rm 3fa9 81c0 --dry-run"]),
        (
            "Delete the keys listed by ls:",
            ["beautyspot ls cache -q --func fetch | beautyspot rm - --yes"],
        ),
    ],
    ("verify",): [
        ("Check the workspace; exit 1 on any problem:", ["beautyspot verify"]),
        ("Preview the repairs:", ["beautyspot verify --fix --dry-run"]),
    ],
    ("clear",): [
        ("Preview clearing one function:", ["beautyspot clear --func fetch_page --dry-run"]),
        ("Clear one DB without asking:", ["beautyspot --db cache clear --yes"]),
    ],
}
COMPLETION_TEXT = (
    "TAB completes subcommands, options, cache keys (show), function names (--func) and DB"
    " names (--db). Completion requests are answered by index queries on the task DBs and"
    " never create or change a file. \\fBbeautyspot \\-\\-install\\-completion\\fR installs"
    " the script for the current shell (bash: ~/.bash_completions/beautyspot.sh, sourced from"
    " ~/.bashrc; zsh: ~/.zfunc/_beautyspot; fish: ~/.config/fish/completions/beautyspot.fish);"
    " \\fBbeautyspot \\-\\-show\\-completion\\fR prints it instead. The same scripts are in the"
    " source tree under completions/ (beautyspot.bash, beautyspot.zsh, beautyspot.fish)."
)


def _page(cmd: Command) -> str:
    return PROG + "".join(f"-{n}" for n in cmd.path)


def _tp_list(items) -> list[str]:
    out = []
    for head, body in items:
        out += [".TP", f"\\fB{esc(head)}\\fR", esc(body)]
    return out


def _section(title: str) -> list[str]:
    return [f".SH {title}"]


def _synopsis(cmd: Command) -> list[str]:
    if not cmd.path:
        return [f".B {PROG}", "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]..."]
    parts = ["[\\fIGLOBAL OPTIONS\\fR]", *(f"\\fB{esc(n)}\\fR" for n in cmd.path)]
    if cmd.group:
        parts += ["[\\fIOPTIONS\\fR]", "\\fICOMMAND\\fR [\\fIARGS\\fR]..."]
    else:
        for p in cmd.options:
            if p.required and not p.hidden:
                parts.append(_opt_head(p).split(", ")[-1])
        parts.append("[\\fIOPTIONS\\fR]")
        parts += [f"\\fI{esc(p.metavar)}\\fR" for p in cmd.arguments if not p.hidden]
    return [f".B {PROG}", " ".join(parts)]


def man_page(cmd: Command, root: Command, date: str, version: str) -> str:
    title = _page(cmd)
    summary = _first_sentence(cmd.help) or cmd.short_help
    lines = [
        '.\\" Generated by scripts/gen_artifacts.py from the Typer app; do not edit.',
        f'.TH {esc(title.upper())} 1 "{date}" "{PROG} {version}" "User Commands"',
        ".nh",
        ".ad l",
        *_section("NAME"),
        f"{esc(title)} \\- {esc(summary.rstrip('.'))}",
        *_section("SYNOPSIS"),
        *_synopsis(cmd),
        *_section("DESCRIPTION"),
    ]
    paragraphs = _paragraphs(cmd.help)
    if not cmd.path:
        common = [
            n
            for p in root.options
            for n in p.opts
            if n.startswith("--")
            and n != "--help"
            and all(any(n in q.opts for q in c.options) for c in all_commands(root)[1:])
        ]
        paragraphs = ROOT_DESCRIPTION + [
            "Global options go before the command"
            + (
                f"; {_and(common)} {'are' if len(common) > 1 else 'is'} also accepted after it"
                if common
                else ""
            )
            + ". Durations are written 30s, 15m, 12h, 30d or 2w; --older-than also takes an"
            " ISO date."
        ]
    for i, para in enumerate(paragraphs):
        lines += ([".PP"] if i else []) + [esc(para)]
    if cmd.epilog:
        for para in _paragraphs(cmd.epilog):
            lines += [".PP", esc(para)]
    visible = [c for c in cmd.commands if not c.hidden]
    if visible:
        lines += _section("COMMANDS")
        for sub in visible:
            page = _page(sub)
            lines += [
                ".TP",
                f"\\fB{esc(sub.path[-1])}\\fR",
                f"{esc(_paragraphs(sub.help)[0] if sub.help else sub.short_help)}"
                f" See \\fB{esc(page)}\\fR(1).",
            ]
    arguments = [p for p in cmd.arguments if not p.hidden]
    if arguments:
        lines += _section("ARGUMENTS")
        for p in arguments:
            lines += [".TP", f"\\fI{esc(p.metavar)}\\fR", esc(_option_help(p))]
    options = [p for p in cmd.options if not p.hidden]
    if options:
        lines += _section("OPTIONS")
        for p in options:
            lines += [".TP", _opt_head(p), esc(_option_help(p))]
    if not cmd.path:
        lines += _section("SHELL COMPLETION") + [COMPLETION_TEXT]
    lines += _section("EXIT STATUS") + _tp_list(EXIT_STATUS)
    lines += _section("ENVIRONMENT") + _tp_list(ENVIRONMENT)
    lines += _section("FILES") + _tp_list(FILES)
    examples = EXAMPLES.get(cmd.path) or [
        ("Options and arguments of this command:", [f"{PROG} {' '.join(cmd.path)} --help"])
    ]
    lines += _section("EXAMPLES")
    for i, (text, commands) in enumerate(examples):
        lines += ([".PP"] if i else []) + [esc(text), ".PP", ".RS 4", ".nf"]
        lines += [esc(c) for c in commands] + [".fi", ".RE"]
    lines += _section("SEE ALSO")
    refs = [_page(c) for c in all_commands(root) if not c.hidden and _page(c) != title]
    see = [f"\\fB{esc(r)}\\fR(1)" for r in refs] + ["\\fBcrontab\\fR(5)", "\\fBsqlite3\\fR(1)"]
    lines.append(",\n".join(see))
    return "\n".join(lines) + "\n"


def man_pages(root: Command) -> dict[Path, str]:
    from beautyspot import __version__

    date = man_date()
    return {
        Path("man") / f"{_page(c)}.1": man_page(c, root, date, __version__)
        for c in all_commands(root)
        if not c.hidden
    }


# --------------------------------------------------------------------------- main


def artifacts() -> dict[Path, str]:
    root = walk(load_cli())
    out = completion_scripts()
    out.update(man_pages(root))
    out[TABLE] = completion_table(root)
    return out


def _extra(expected: dict[Path, str]) -> list[Path]:
    """Generated-looking files no longer produced (a removed command's page)."""
    found = [p.relative_to(ROOT) for p in (ROOT / "man").glob(f"{PROG}*.1")]
    found += [p.relative_to(ROOT) for p in (ROOT / "completions").glob(f"{PROG}.*")]
    return sorted(p for p in found if p not in expected)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--update", action="store_true", help="write the generated files")
    mode.add_argument("--check", action="store_true", help="exit 1 if any file is stale")
    args = ap.parse_args(argv)
    expected = artifacts()
    stale = [
        path
        for path, text in expected.items()
        if not (ROOT / path).is_file() or (ROOT / path).read_text(encoding="utf-8") != text
    ]
    extra = _extra(expected)
    if args.check:
        if stale or extra:
            print("gen_artifacts: generated files are out of date:", file=sys.stderr)
            for path in stale:
                state = "stale" if (ROOT / path).exists() else "missing"
                print(f"  {path} ({state})", file=sys.stderr)
            for path in extra:
                print(f"  {path} (no longer generated)", file=sys.stderr)
            print("run: python scripts/gen_artifacts.py --update", file=sys.stderr)
            return 1
        print(f"gen_artifacts: {len(expected)} generated files are current")
        return 0
    for path in stale:
        (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
        with open(ROOT / path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(expected[path])
        print(f"wrote {path}")
    for path in extra:
        (ROOT / path).unlink()
        print(f"removed {path}")
    if not stale and not extra:
        print("gen_artifacts: nothing to update")
    return 0


if __name__ == "__main__":
    sys.exit(main())
