"""The one object through which the CLI writes to the terminal.

Rich tables on a TTY, plain aligned text off it, one JSON document with ``--json``. Every value
that may come from a DB row or a file name goes through :func:`safe_text`, so no terminal control
sequence and no Rich markup in the data can take effect: data is always printed literally.

``rich`` is imported inside methods only: importing this module must stay cheap, because the
completion path and cron runs (no TTY) never need it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json as _json
import math
import os
import sys
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import PurePath

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for show)
if TYPE_CHECKING:
    from typing import Any, TextIO

__all__ = ["Output", "ProgressTracker", "format_bytes", "safe_text"]

ELLIPSIS = "…"
KV_MAX_LEN = 2000


def _build_escape_table() -> dict[int, str]:
    table: dict[int, str] = {}
    # C0 (incl. \t \n \r ESC), DEL and C1: these start or are part of terminal control sequences.
    for cp in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]:
        table[cp] = f"\\x{cp:02x}"
    # Line/paragraph separators break "one value, one line"; bidi controls can make a name
    # display as something else (Trojan Source). The marks (ALM, LRM, RLM) are included too.
    for cp in [
        0x061C,
        0x200E,
        0x200F,
        0x2028,
        0x2029,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    ]:
        table[cp] = f"\\u{cp:04x}"
    return table


_ESCAPES = _build_escape_table()


def safe_text(value: object, max_len: int | None = None) -> str:
    """Return *value* as a single line of text that is safe to print literally.

    ``None`` gives ``""``; bytes are decoded as UTF-8 with invalid bytes shown as ``\\xNN``; lone
    surrogates are shown as ``\\udcNN``; control, line-separator and bidi characters become
    visible ``\\xNN`` / ``\\uNNNN`` escapes. With *max_len*, the result is at most that many
    characters, ending in ``…`` when it was cut. No Rich markup escaping is done here: the text
    stays plain for JSON and non-TTY output, and the TTY renderer wraps it in ``rich.text.Text``.
    """
    if value is None:
        return ""
    if max_len is not None and max_len <= 0:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        # Escaping never shortens text, so a generous prefix is enough to fill max_len.
        if max_len is not None and len(raw) > 4 * max_len + 8:
            raw = raw[: 4 * max_len + 8]
        text = raw.decode("utf-8", "backslashreplace")
    else:
        text = value if isinstance(value, str) else str(value)
        if max_len is not None and len(text) > max_len + 1:
            text = text[: max_len + 1]
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates (e.g. from os.fsdecode of a bad name)
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = text.translate(_ESCAPES)
    if max_len is not None and len(text) > max_len:
        text = text[: max_len - 1] + ELLIPSIS
    return text


def format_bytes(n: int | None) -> str:
    """Human-readable size in decimal units: ``0 B``, ``512 B``, ``1.5 kB``, ``4.0 GB``."""
    if n is None:
        return "-"
    sign = "-" if n < 0 else ""
    size = float(abs(n))
    if size < 1000:
        return f"{sign}{int(size)} B"
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        size /= 1000
        # Move up a unit when rounding would print "1000.0 kB".
        if round(size, 1) < 1000 or unit == "PB":
            return f"{sign}{size:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _cell_width(text: str) -> int:
    """Terminal columns taken by *text* (wide East Asian characters count 2, combining 0)."""
    if text.isascii():
        return len(text)
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _pad(text: str, width: int, justify: str) -> str:
    gap = width - _cell_width(text)
    if gap <= 0:
        return text
    if justify == "right":
        return " " * gap + text
    if justify == "center":
        left = gap // 2
        return " " * left + text + " " * (gap - left)
    return text + " " * gap


def _jsonable(obj: Any) -> Any:
    """Convert *obj* to JSON primitives, passing every string through :func:`safe_text`."""
    if obj is None or isinstance(obj, (bool, int)):
        return obj.value if isinstance(obj, enum.Enum) else obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None  # NaN/Infinity are not valid JSON
    if isinstance(obj, str):
        return safe_text(obj.value if isinstance(obj, enum.Enum) else obj)
    if isinstance(obj, enum.Enum):
        return _jsonable(obj.value)
    if isinstance(obj, (dt.datetime, dt.date, dt.time)):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return safe_text(str(obj))
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).hex()
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):  # a named tuple: an object
        return _jsonable(obj._asdict())
    if hasattr(type(obj), "__dataclass_fields__"):  # whoever made it imported dataclasses
        import dataclasses

        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {_json_key(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        items = [_jsonable(v) for v in obj]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=lambda v: _json.dumps(v, sort_keys=True))
    if isinstance(obj, (list, tuple)) or _is_iterable(obj):
        return [_jsonable(v) for v in obj]
    return safe_text(obj)


def _is_iterable(obj: Any) -> bool:
    try:
        iter(obj)
    except TypeError:
        return False
    return True


def _json_key(key: Any) -> Any:
    if key is None or (isinstance(key, (bool, int, float)) and not isinstance(key, enum.Enum)):
        return key
    converted = _jsonable(key)
    return converted if isinstance(converted, str) else safe_text(converted)


def _json_default(obj: Any) -> Any:
    # Backstop only: _jsonable already converted everything it knows.
    return safe_text(obj)


def _write(stream: TextIO, text: str) -> None:
    try:
        stream.write(text)
    except UnicodeEncodeError:
        # A stream in a legacy encoding (e.g. LANG=...ISO-8859-1): degrade, never crash.
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(encoding, "backslashreplace").decode(encoding))


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class ProgressTracker:
    """What :meth:`Output.progress` yields. This base class is the silent one: it does nothing."""

    __slots__ = ()

    def advance(self, n: int = 1) -> None:
        """Record *n* more units of work done."""


_SILENT = ProgressTracker()


class _RichTracker(ProgressTracker):
    __slots__ = ("_progress", "_task_id")

    def __init__(self, progress: Any, task_id: Any) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task_id, n)


class Output:
    """Writes the CLI's results: Rich on a TTY, plain text off it, JSON in *json_mode*.

    In *json_mode* stdout carries exactly the one document given to :meth:`json`: ``table``,
    ``line`` and ``kv`` are no-ops and no progress is shown. Errors and warnings always go to
    stderr as one plain line each.
    """

    def __init__(
        self,
        json_mode: bool = False,
        stream: TextIO | None = None,
        err_stream: TextIO | None = None,
        force_terminal: bool | None = None,
    ) -> None:
        self.json_mode = json_mode
        self.stream: TextIO = stream if stream is not None else sys.stdout
        self.err_stream: TextIO = err_stream if err_stream is not None else sys.stderr
        no_color = os.environ.get("NO_COLOR", "") != ""
        self.is_tty = force_terminal if force_terminal is not None else _isatty(self.stream)
        # Progress goes to stderr, so it follows stderr's TTY-ness (e.g. `beautyspot gc > log`).
        self.err_is_tty = force_terminal if force_terminal is not None else _isatty(self.err_stream)
        self.color = self.is_tty and not no_color
        self.err_color = self.err_is_tty and not no_color
        self._console: Any = None
        self._err_console: Any = None

    # -- Rich consoles, created on first use -------------------------------------------------

    def _make_console(self, file: TextIO, color: bool) -> Any:
        from rich.console import Console

        return Console(
            file=file,
            force_terminal=True,
            color_system="auto" if color else None,
            no_color=not color,
            markup=False,
            emoji=False,
            highlight=False,
        )

    def _rich(self) -> Any:
        if self._console is None:
            self._console = self._make_console(self.stream, self.color)
        return self._console

    def _rich_err(self) -> Any:
        if self._err_console is None:
            self._err_console = self._make_console(self.err_stream, self.err_color)
        return self._err_console

    # -- stdout -------------------------------------------------------------------------------

    def table(
        self,
        title: str | None,
        columns: list[str],
        rows: list[list[object]],
        *,
        max_col_width: int = 48,
        justify: dict[str, str] | None = None,
    ) -> None:
        """Print *rows* under *columns*; each cell is escaped and cut to *max_col_width*.

        No-op in json_mode: the caller emits the same data with :meth:`json`.
        """
        if self.json_mode:
            return
        justify = justify or {}
        aligns = [justify.get(col, "left") for col in columns]
        headers = [safe_text(col) for col in columns]
        cells: list[list[str]] = []
        for row in rows:
            if len(row) > len(columns):
                raise ValueError(f"row has {len(row)} cells for {len(columns)} columns")
            padded = list(row) + [None] * (len(columns) - len(row))
            cells.append([safe_text(value, max_col_width) for value in padded])
        if self.is_tty:
            self._rich_table(title, headers, aligns, cells)
        else:
            self._plain_table(title, headers, aligns, cells)

    def _rich_table(
        self, title: str | None, headers: list[str], aligns: list[str], cells: list[list[str]]
    ) -> None:
        from rich.table import Table
        from rich.text import Text

        table = Table(
            title=Text(safe_text(title)) if title else None,
            header_style="bold",
            title_style="bold",
        )
        for header, align in zip(headers, aligns, strict=True):
            table.add_column(Text(header), justify=align)  # type: ignore[arg-type]
        for row in cells:
            table.add_row(*(Text(cell) for cell in row))
        self._rich().print(table)

    def _plain_table(
        self, title: str | None, headers: list[str], aligns: list[str], cells: list[list[str]]
    ) -> None:
        widths = [_cell_width(h) for h in headers]
        for row in cells:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], _cell_width(cell))
        lines = [safe_text(title)] if title else []
        for row in [headers, *cells]:
            line = "  ".join(_pad(c, w, a) for c, w, a in zip(row, widths, aligns, strict=True))
            lines.append(line.rstrip())
        _write(self.stream, "".join(line + "\n" for line in lines))

    def line(self, text: str = "", *, style: str | None = None) -> None:
        """Print *text* as one literal line; *style* (a Rich style) applies only with colour."""
        if self.json_mode:
            return
        text = safe_text(text)
        if style and self.color:
            from rich.text import Text

            self._rich().print(Text(text, style=style), soft_wrap=True)
        else:
            _write(self.stream, text + "\n")

    def kv(self, pairs: list[tuple[str, object]]) -> None:
        """Print an aligned ``key: value`` block."""
        if self.json_mode or not pairs:
            return
        keys = [safe_text(k) + ":" for k, _ in pairs]
        values = [safe_text(v, KV_MAX_LEN) for _, v in pairs]
        width = max(_cell_width(k) for k in keys)
        if self.color:
            from rich.text import Text

            console = self._rich()
            for key, value in zip(keys, values, strict=True):
                out = Text(_pad(key, width, "left") + " ")
                out.stylize("bold", 0, len(key))
                out.append(value)
                console.print(out, soft_wrap=True)
        else:
            block = "".join(
                f"{_pad(k, width, 'left')} {v}".rstrip() + "\n"
                for k, v in zip(keys, values, strict=True)
            )
            _write(self.stream, block)

    def json(self, doc: object) -> None:
        """Write *doc* as one JSON document (every string escaped with :func:`safe_text`)."""
        text = _json.dumps(_jsonable(doc), ensure_ascii=False, indent=2, default=_json_default)
        _write(self.stream, text + "\n")
        with contextlib.suppress(AttributeError, ValueError, OSError):
            self.stream.flush()

    # -- stderr -------------------------------------------------------------------------------

    def _err_line(self, prefix: str, message: str) -> None:
        _write(self.err_stream, f"beautyspot: {prefix}: {safe_text(message)}\n")
        with contextlib.suppress(AttributeError, ValueError, OSError):
            self.err_stream.flush()

    def error(self, message: str) -> None:
        """One line on stderr: ``beautyspot: error: <message>``."""
        self._err_line("error", message)

    def warn(self, message: str) -> None:
        """One line on stderr: ``beautyspot: warning: <message>``."""
        self._err_line("warning", message)

    @contextlib.contextmanager
    def progress(self, total: int | None, description: str) -> Iterator[ProgressTracker]:
        """Show a progress bar on stderr when it is a TTY; otherwise do nothing, cheaply."""
        if self.json_mode or not self.err_is_tty:
            yield _SILENT
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        bar = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self._rich_err(),
            transient=True,
        )
        with bar:
            task_id = bar.add_task(safe_text(description, 60), total=total)
            yield _RichTracker(bar, task_id)

    def confirm(self, question: str) -> bool:
        """Ask *question* on stderr and read y/N from stdin. EOF or Ctrl-C count as "no"."""
        _write(self.err_stream, f"{safe_text(question)} [y/N] ")
        with contextlib.suppress(AttributeError, ValueError, OSError):
            self.err_stream.flush()
        try:
            answer = input()
        except (EOFError, KeyboardInterrupt):
            _write(self.err_stream, "\n")
            return False
        return answer.strip().lower() in ("y", "yes")
