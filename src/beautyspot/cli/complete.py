"""Shell completion, answered without Typer, Click or Rich.

A TAB press runs ``beautyspot`` with ``_BEAUTYSPOT_COMPLETE`` set.  :func:`answer` handles
that request here, from the generated command table (:mod:`._completion_table`, written by
``scripts/gen_artifacts.py`` from the Typer app and checked against it by the tests) and
from index range queries in :mod:`beautyspot.readonly` (what ``TaskReader`` runs too); it
imports nothing that the answer does not need (``python -X importtime`` shows it): no
``typing``, ``dataclasses`` or ``logging``, which alone cost more than Python's start-up.

Protocols (the instruction in ``_BEAUTYSPOT_COMPLETE``):

* ``complete_bash``, ``complete_zsh``, ``complete_fish``, ``complete_powershell``: Typer's,
  used by the scripts in ``completions/`` and by ``--install-completion``.  Output is
  byte for byte what Typer itself would print for the same command line, except that
  help texts are shown literally (Typer renders them as Rich markup, which eats
  ``[default: ...]``).
* ``bash_complete``, ``zsh_complete``, ``fish_complete``: Click 8's, for scripts generated
  by plain Click.

Any other instruction (``source_bash``...) returns None and goes to the Typer app.

Which candidates a command line gets follows Click's rules (``_resolve_context`` and
``_resolve_incomplete``): option names when the word starts with ``-``, else the value of
an option that still needs one, else the next positional argument, else subcommands.
Values come from the workspace: cache keys (``show``), function names (``--func``), DB
names (``--db``, ``ls DB``), at most :data:`MAX_CANDIDATES`, sorted.  The workspace is
``-w/--workspace`` from the line, else ``BEAUTYSPOT_WORKSPACE``, else ``./.beautyspot``;
``--db`` on the line narrows keys and functions to that DB.  A missing workspace or an
unreadable DB gives no candidates; nothing is ever created or written.
"""

from __future__ import annotations

import os
import sys

from ..readonly import DB_SUFFIXES
from ._completion_table import COMMANDS

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (it costs ~5 ms)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import BinaryIO

COMPLETE_VAR = "_BEAUTYSPOT_COMPLETE"
MAX_CANDIDATES = 50
DB_TIMEOUT = 0.25  # seconds a locked DB may hold up a TAB press
QUERY_BUDGET = 1.0  # seconds of queries per request; a slower DB is cut off (no candidates)
DEFAULT_WORKSPACE = ".beautyspot"

# A candidate: (value, help or None, Click item type: "plain", "file" or "dir").
Item = tuple[str, "str | None", str]


# --------------------------------------------------------------------------- parsing


class Line:
    """What the complete words of a command line say, parsed the way Click parses them."""

    def __init__(self) -> None:
        self.path = ""  # the command the cursor is in: "" (the root group), "ls", ...
        self.node = COMMANDS[""]
        self.seen: set[str] = set()  # parameters given in the current command
        self.filled = 0  # positional argument slots used in the current command
        self.pending: list | None = None  # [option, values it still expects]
        self.dashdash = False  # "--" seen: the rest are positional
        self.stuck = False  # an unknown command name: stop reading, like Click
        self.workspace: str | None = None  # last -w/--workspace value
        self.db: str | None = None  # last --db (or ls DB) value

    def feed(self, words: list[str]) -> None:
        for word in words:
            if self.stuck:
                return
            self.word(word)

    def word(self, word: str) -> None:
        if self.pending is not None:
            option, left = self.pending
            if word == "=" and left == option["nargs"]:
                return  # bash splits --opt=value into three words
            self.value(option, word)
            self.pending = None if left == 1 else [option, left - 1]
        elif word == "--" and not self.dashdash:
            self.dashdash = True
        elif word[:1] == "-" and word != "-" and not self.dashdash:
            self.option(word)
        elif self.node["group"]:
            sub = f"{self.path} {word}".lstrip()
            if any(word == name for name, _, _ in self.node["commands"]):
                self.path, self.node = sub, COMMANDS[sub]
                self.seen, self.filled, self.dashdash = set(), 0, False
            else:
                self.stuck = True
        else:
            argument = self.argument_slot()
            if argument is not None:
                self.value(argument, word)
                self.seen.add(argument["name"])
                if argument["nargs"] != -1:
                    self.filled += 1

    def option(self, word: str) -> None:
        options = self.node["options"]
        if word.startswith("--"):
            name, eq, inline = word.partition("=")
            found = _find_option(options, name)
            if found is None:
                return  # unknown: Click would fail; completion just reads on
            self.seen.add(found["name"])
            if found["nargs"]:
                if eq:
                    self.value(found, inline)
                    if found["nargs"] > 1:
                        self.pending = [found, found["nargs"] - 1]
                else:
                    self.pending = [found, found["nargs"]]
            return
        found = _find_option(options, word)
        if found is not None:  # an exact short or single-dash name
            self.seen.add(found["name"])
            if found["nargs"]:
                self.pending = [found, found["nargs"]]
            return
        for i in range(1, len(word)):  # a cluster of short flags, the last may take a value
            found = _find_option(options, "-" + word[i])
            if found is None:
                continue
            self.seen.add(found["name"])
            if found["nargs"]:
                rest = word[i + 1 :]
                if rest:
                    self.value(found, rest)
                    if found["nargs"] > 1:
                        self.pending = [found, found["nargs"] - 1]
                else:
                    self.pending = [found, found["nargs"]]
                return

    def value(self, param: Mapping, value: str) -> None:
        if param["complete"] == "workspace":
            self.workspace = value
        elif param["complete"] == "dbs":
            self.db = value

    def argument_slot(self) -> Mapping | None:
        used = self.filled
        for argument in self.node["arguments"]:
            if argument["nargs"] == -1:
                return argument
            if used < argument["nargs"]:
                return argument
            used -= argument["nargs"]
        return None


def _find_option(options: tuple, name: str) -> Mapping | None:
    for option in options:
        if name in option["opts"]:
            return option
    return None


def candidates(
    words: list[str], incomplete: str, environ: Mapping[str, str] = os.environ
) -> list[Item]:
    """The completion items for *incomplete* after the complete *words* (program excluded)."""
    line = Line()
    line.feed(words)
    # Click splits --opt=value in the word being completed and completes the value.
    if incomplete == "=":
        incomplete = ""
    elif "=" in incomplete and incomplete[:1] == "-" and not line.stuck:
        name, _, incomplete = incomplete.partition("=")
        line.word(name)
    if "--" not in words and incomplete[:1] == "-":
        return _names(line, incomplete)
    if line.pending is not None and not line.stuck:
        return _values(line.pending[0], incomplete, line, environ)
    if not line.stuck and not line.node["group"]:
        argument = line.argument_slot()
        if argument is not None:
            return _values(argument, incomplete, line, environ)
    return _names(line, incomplete)


def _names(line: Line, incomplete: str) -> list[Item]:
    """Subcommands, and option names when the word starts like one (Click's order)."""
    items: list[Item] = [
        (name, help_, "plain")
        for name, help_, hidden in line.node["commands"]
        if not hidden and name.startswith(incomplete)
    ]
    if incomplete and not incomplete[0].isalnum():
        for option in line.node["options"]:
            if option["hidden"] or (not option["multiple"] and option["name"] in line.seen):
                continue
            items.extend(
                (name, option["help"], "plain")
                for name in option["opts"]
                if name.startswith(incomplete)
            )
    return items


# --------------------------------------------------------------------------- values


def _values(param: Mapping, incomplete: str, line: Line, environ: Mapping[str, str]) -> list[Item]:
    choices = param["choices"]
    if choices is not None:
        if param["case_sensitive"]:
            return [(c, None, "plain") for c in choices if c.startswith(incomplete)]
        low = incomplete.lower()
        return [(c, None, "plain") for c in choices if c.lower().startswith(low)]
    kind = param["complete"]
    if kind in ("path", "workspace"):
        return [(incomplete, None, "dir" if kind == "workspace" else "file")]
    if kind not in _SOURCES:
        return []
    root = line.workspace or environ.get("BEAUTYSPOT_WORKSPACE") or DEFAULT_WORKSPACE
    root = os.path.expanduser(root)
    db = None if kind == "dbs" or line.db is None else os.path.expanduser(line.db)
    found = _SOURCES[kind](root, db, incomplete)
    return [(v, None, "plain") for v in sorted(set(filter(_showable, found)))[:MAX_CANDIDATES]]


def _showable(value: str) -> bool:
    """Shells read one candidate per line: no control characters, valid UTF-8 only."""
    if any(ch < " " or ch == "\x7f" for ch in value):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not UTF-8
        return False
    return True


def _db_paths(root: str, db: str | None) -> list[str]:
    from ..readonly import db_files, find_db

    if db is not None:
        path = find_db(root, db)
        return [] if path is None else [path]
    try:
        return db_files(root)
    except OSError:
        return []  # no workspace: nothing to offer


def _from_each_db(root: str, db: str | None, fetch: Callable) -> list[str]:
    import sqlite3
    import time

    from ..errors import BeautySpotError
    from ..readonly import open_readonly, task_columns

    deadline = time.monotonic() + QUERY_BUDGET

    def over_budget() -> int:  # SQLite's progress handler: non-zero interrupts the query
        return int(time.monotonic() > deadline)

    found: list[str] = []
    for path in _db_paths(root, db):
        try:
            conn = open_readonly(path, DB_TIMEOUT)
            try:
                conn.set_progress_handler(over_budget, 10_000)
                columns = task_columns(conn)
                if columns is not None:
                    found.extend(fetch(conn, columns))
            finally:
                conn.close()
        except (BeautySpotError, OSError, sqlite3.Error):
            continue  # unreadable, locked or too slow: the other DBs still answer
    return found


def _keys(root: str, db: str | None, prefix: str) -> list[str]:
    from ..readonly import keys_with_prefix

    return _from_each_db(root, db, lambda c, _: keys_with_prefix(c, prefix, MAX_CANDIDATES))


def _functions(root: str, db: str | None, prefix: str) -> list[str]:
    from ..readonly import functions_with_prefix

    return _from_each_db(
        root, db, lambda c, cols: functions_with_prefix(c, cols, prefix, MAX_CANDIDATES)
    )


def _dbs(root: str, db: str | None, incomplete: str) -> list[str]:
    """DB names of the workspace, or DB files by path (``./x.db``, ``/srv/cache/y.sqlite``)."""
    head, slash, base = incomplete.rpartition("/")
    found: list[str] = []
    if not slash:
        found += [
            os.path.basename(p).rsplit(".", 1)[0]
            for p in _db_paths(root, None)
            if os.path.isfile(p)
            if os.path.basename(p).startswith(incomplete)
        ]
    directory = os.path.expanduser(head or "/") if slash else "."
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if (
                    name.startswith(base)
                    and name.endswith(DB_SUFFIXES)
                    and (base.startswith(".") or not name.startswith("."))
                    and entry.is_file()
                ):
                    found.append(head + slash + name)
    except OSError:
        pass
    return found


_SOURCES: dict[str, Callable[[str, str | None, str], list[str]]] = {
    "keys": _keys,
    "functions": _functions,
    "dbs": _dbs,
}


# --------------------------------------------------------------------------- protocols


def split_arg_string(string: str) -> list[str]:
    """Click's ``split_arg_string`` (POSIX ``shlex`` words; an unterminated last word is
    kept as far as it goes), without importing ``shlex`` and ``re``.  A Hypothesis test
    checks it against Click's."""
    words: list[str] = []
    token: list[str] = []
    started = False  # a word has begun (it may still be empty: '')
    quote = ""
    i, n = 0, len(string)
    while i < n:
        ch = string[i]
        if quote == "'":
            if ch == "'":
                quote = ""
            else:
                token.append(ch)
        elif quote == '"':
            if ch == '"':
                quote = ""
            elif ch == "\\":
                if i + 1 == n:
                    break  # an escape at the very end: the word so far
                nxt = string[i + 1]
                token.append(nxt if nxt in '"\\' else ch + nxt)
                i += 1
            else:
                token.append(ch)
        elif ch in " \t\r\n":
            if started:
                words.append("".join(token))
                token, started = [], False
        elif ch == "\\":
            started = True
            if i + 1 == n:
                break
            token.append(string[i + 1])
            i += 1
        else:
            started = True
            if ch in "'\"":
                quote = ch
            else:
                token.append(ch)
        i += 1
    if started:
        words.append("".join(token))
    return words


def _typer_line(environ: Mapping[str, str]) -> tuple[list[str], str]:
    """``_TYPER_COMPLETE_ARGS`` (zsh, fish): the line up to the cursor."""
    text = environ.get("_TYPER_COMPLETE_ARGS", "")
    words = split_arg_string(text)[1:]
    if words and not text.endswith(" "):
        return words[:-1], words[-1]
    return words, ""


def _comp_words(environ: Mapping[str, str]) -> tuple[list[str], str]:
    """``COMP_WORDS`` and ``COMP_CWORD`` (bash, and zsh for Click)."""
    words = split_arg_string(environ["COMP_WORDS"])
    cword = int(environ["COMP_CWORD"])
    incomplete = words[cword] if 0 <= cword < len(words) else ""
    return words[1:cword], incomplete


def _plain(items: list[Item]) -> list[Item]:
    """Typer's scripts show every value; its own path types yield none (files fall back)."""
    return [item for item in items if item[2] == "plain"]


def _typer_bash(environ: Mapping[str, str]) -> tuple[int, str]:
    items = _plain(candidates(*_comp_words(environ), environ))
    return 0, "\n".join(value for value, _, _ in items) + "\n"


def _zsh_escape(text: str) -> str:
    return (
        text.replace('"', '""')
        .replace("'", "''")
        .replace("$", "\\$")
        .replace("`", "\\`")
        .replace(":", r"\\:")
    )


def _typer_zsh(environ: Mapping[str, str]) -> tuple[int, str]:
    items = _plain(candidates(*_typer_line(environ), environ))
    if not items:
        return 0, "_files\n"
    lines = [
        f'"{_zsh_escape(value)}":"{_zsh_escape(help_)}"' if help_ else f'"{_zsh_escape(value)}"'
        for value, help_, _ in items
    ]
    return 0, "_arguments '*: :((" + "\n".join(lines) + "))'\n"


def _fish_line(value: str, help_: str | None) -> str:
    if not help_:
        return value
    return value + "\t" + "".join(" " if ch.isspace() else ch for ch in help_)


def _typer_fish(environ: Mapping[str, str]) -> tuple[int, str | None]:
    items = _plain(candidates(*_typer_line(environ), environ))
    action = environ.get("_TYPER_COMPLETE_FISH_ACTION", "")
    if action == "is-args":  # the --condition call: exit 0 turns file completion off
        return (0 if items else 1), None
    if action == "get-args" and items:
        return 0, "\n".join(_fish_line(v, h) for v, h, _ in items) + "\n"
    return 0, "\n"


def _typer_powershell(environ: Mapping[str, str]) -> tuple[int, str]:
    incomplete = environ.get("_TYPER_COMPLETE_WORD_TO_COMPLETE", "")
    words = split_arg_string(environ.get("_TYPER_COMPLETE_ARGS", ""))
    words = words[1:-1] if incomplete else words[1:]
    items = _plain(candidates(words, incomplete, environ))
    return 0, "\n".join(f"{v}:::{h if h else ' '}" for v, h, _ in items) + "\n"


def _click_bash(environ: Mapping[str, str]) -> tuple[int, str]:
    items = candidates(*_comp_words(environ), environ)
    return 0, "\n".join(f"{t},{v}" for v, _, t in items) + "\n"


def _click_zsh(environ: Mapping[str, str]) -> tuple[int, str]:
    out = []
    for value, help_, type_ in candidates(*_comp_words(environ), environ):
        if help_:
            out.append(f"{type_}\n{value.replace(':', chr(92) + ':')}\n{help_}")
        else:
            out.append(f"{type_}\n{value}\n_")
    return 0, "\n".join(out) + "\n"


def _click_fish(environ: Mapping[str, str]) -> tuple[int, str]:
    words = split_arg_string(environ["COMP_WORDS"])[1:]
    incomplete = environ["COMP_CWORD"]
    if incomplete:
        incomplete = split_arg_string(incomplete)[0]
    if incomplete and words and words[-1] == incomplete:
        words.pop()
    out = [
        f"{t},{v}\t{h}" if h else f"{t},{v}" for v, h, t in candidates(words, incomplete, environ)
    ]
    return 0, "\n".join(out) + "\n"


PROTOCOLS: dict[str, Callable[[Mapping[str, str]], tuple[int, str | None]]] = {
    "complete_bash": _typer_bash,
    "complete_zsh": _typer_zsh,
    "complete_fish": _typer_fish,
    "complete_powershell": _typer_powershell,
    "complete_pwsh": _typer_powershell,
    "bash_complete": _click_bash,
    "zsh_complete": _click_zsh,
    "fish_complete": _click_fish,
}


def answer(environ: Mapping[str, str] = os.environ, out: BinaryIO | None = None) -> int | None:
    """Answer a completion request on *out* (stdout); the exit code, or None for Typer."""
    protocol = PROTOCOLS.get(environ.get(COMPLETE_VAR, ""))
    if protocol is None:
        return None
    try:
        code, text = protocol(environ)
    except (KeyError, ValueError, IndexError):
        return None  # malformed request: let Typer report it
    if text is not None:
        try:
            stream = sys.stdout.buffer if out is None else out
            stream.write(text.encode("utf-8", "replace"))
            stream.flush()
        except BrokenPipeError:
            pass
    return code
