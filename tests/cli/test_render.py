"""The output object: data printed literally, no control characters, one JSON document."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from beautyspot.cli.render import Output, format_bytes, safe_text

MARKUP = ["[bold]x[/bold]", "[/]", "[link=http://e]y[/link]", "[red]r", ":smile:"]

HOSTILE = [
    "\x1b[31mred\x1b[0m",  # SGR colour
    "\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\",  # OSC 8 hyperlink
    "\x1b]0;title\x07",  # OSC set-title, BEL-terminated
    "bell\x07",
    "two\nlines",
    "over\rwrite",
    "nul\x00byte",
    "del\x7f",
    "c1\x9b31m",  # 8-bit CSI
    "bidi\u202eevil\u202c",
    "iso\u2066x\u2069",
    "ls\u2028ps\u2029",
]
RAW_CONTROLS = ["\x1b", "\x07", "\x00", "\x7f", "\x9b", "\r", "\u202e", "\u2066", "\u2028"]


def make(*, tty: bool, json_mode: bool = False) -> tuple[Output, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Output(json_mode, stream=out, err_stream=err, force_terminal=tty), out, err


@pytest.fixture(autouse=True)
def _colour_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TERM", "xterm-256color")


# -- safe_text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        ("plain", "plain"),
        ("[bold]x[/bold]", "[bold]x[/bold]"),  # no markup escaping here
        ("a\nb\tc\rd", "a\\x0ab\\x09c\\x0dd"),
        ("\x1b[31m", "\\x1b[31m"),
        ("\x00\x07\x7f", "\\x00\\x07\\x7f"),
        ("\x80\x9b\x9f", "\\x80\\x9b\\x9f"),
        ("\u2028\u2029", "\\u2028\\u2029"),
        ("\u202a\u202e\u2066\u2069", "\\u202a\\u202e\\u2066\\u2069"),
        ("caf\u00e9 \u6f22", "caf\u00e9 \u6f22"),
        (b"ok\xff\xfe", "ok\\xff\\xfe"),
        (b"esc\x1b", "esc\\x1b"),
        ("bad\udc80name", "bad\\udc80name"),
        (42, "42"),
        (Path("a/b"), "a/b"),
    ],
)
def test_safe_text(value: object, expected: str) -> None:
    assert safe_text(value) == expected


def test_safe_text_truncates_with_ellipsis() -> None:
    assert safe_text("abcdef", 4) == "abc…"
    assert safe_text("abcd", 4) == "abcd"
    assert safe_text("ab\ncd", 4) == "ab\\…"  # length counted after escaping
    assert safe_text(b"x" * 10_000, 10) == "x" * 9 + "…"
    assert safe_text("x" * 10_000, 1) == "…"
    assert safe_text("x", 0) == ""


def test_safe_text_output_is_one_printable_line() -> None:
    every = "".join(chr(cp) for cp in range(0x0, 0x250)) + "\u2028\u2029\u202e\u2066\u2069"
    text = safe_text(every)
    assert not any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)
    assert not any(0x202A <= ord(ch) <= 0x202E or 0x2066 <= ord(ch) <= 0x2069 for ch in text)


# -- tables ---------------------------------------------------------------------------------


def test_tty_table_prints_markup_literally() -> None:
    output, out, _ = make(tty=True)
    output.table("[bold]title[/]", ["name", "[i]col[/i]"], [[m, m] for m in MARKUP])
    text = out.getvalue()
    for m in MARKUP:
        assert m in text
    assert "[bold]title[/]" in text
    assert "[i]col[/i]" in text


def test_tty_table_is_rich_with_colour() -> None:
    output, out, _ = make(tty=True)
    output.table(None, ["a"], [["v"]])
    assert "\x1b[" in out.getvalue()  # styled header on a colour TTY
    assert "│" in out.getvalue() or "|" in out.getvalue()


@pytest.mark.parametrize("tty", [True, False])
def test_table_escapes_control_characters(tty: bool) -> None:
    output, out, err = make(tty=tty)
    output.table("t\x1b]0;x\x07", ["value\n"], [[h] for h in HOSTILE])
    text = out.getvalue()
    if tty:
        # Rich's own styling may use ESC[; no data byte may survive raw.
        text = text.replace("\x1b[1m", "").replace("\x1b[0m", "")
    for ch in RAW_CONTROLS:
        assert ch not in text
    assert "\\x1b]8;;http://evil" in text
    assert "\\u202e" in text
    assert err.getvalue() == ""


def test_plain_table_layout_and_no_ansi() -> None:
    output, out, _ = make(tty=False)
    output.table(
        "DBs",
        ["name", "size"],
        [["alpha", format_bytes(1500)], ["b\x1b[1m", "12"]],
        justify={"size": "right"},
    )
    text = out.getvalue()
    assert "\x1b" not in text
    assert text.splitlines() == [
        "DBs",
        "name        size",
        "alpha     1.5 kB",
        "b\\x1b[1m      12",
    ]


@pytest.mark.parametrize("tty", [True, False])
def test_long_values_truncated_in_tables(tty: bool) -> None:
    output, out, _ = make(tty=tty)
    output.table(None, ["v"], [["x" * 10_000]], max_col_width=20)
    text = out.getvalue()
    assert "x" * 19 + "…" in text
    assert "x" * 20 not in text
    assert len(text) < 1000


def test_short_rows_padded_and_long_rows_rejected() -> None:
    output, out, _ = make(tty=False)
    output.table(None, ["a", "b"], [["1"]])
    assert out.getvalue().splitlines() == ["a  b", "1"]
    with pytest.raises(ValueError):
        output.table(None, ["a"], [["1", "2"]])


def test_no_color_respected_on_a_forced_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    output, out, _ = make(tty=True)
    assert output.is_tty and not output.color
    output.table("t", ["a", "b"], [["[bold]x[/bold]", "\x1b[31m"]])
    output.line("styled", style="bold red")
    output.kv([("key", "value")])
    text = out.getvalue()
    assert "\x1b[" not in text
    assert "[bold]x[/bold]" in text


def test_not_a_tty_detected_from_stream() -> None:
    output = Output(stream=io.StringIO(), err_stream=io.StringIO())
    assert not output.is_tty and not output.color


def test_json_mode_table_line_kv_are_noops() -> None:
    output, out, _ = make(tty=True, json_mode=True)
    output.table("t", ["a"], [["1"]])
    output.line("hello")
    output.kv([("k", "v")])
    assert out.getvalue() == ""


# -- line / kv ------------------------------------------------------------------------------


@pytest.mark.parametrize("tty", [True, False])
def test_line_is_literal_and_single(tty: bool) -> None:
    output, out, _ = make(tty=tty)
    output.line("[bold]x[/] a\nb\x1b[2J", style="green")
    text = out.getvalue()
    assert "[bold]x[/] a\\x0ab\\x1b[2J" in text
    assert text.count("\n") == 1
    assert "\x1b[2J" not in text


def test_line_plain_off_tty() -> None:
    output, out, _ = make(tty=False)
    output.line("done", style="bold")
    output.line()
    assert out.getvalue() == "done\n\n"


@pytest.mark.parametrize("tty", [True, False])
def test_kv_aligned_and_escaped(tty: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    output, out, _ = make(tty=tty)
    output.kv([("key", "abc"), ("function", "f\n[x]"), ("long", "y" * 3000), ("none", None)])
    lines = out.getvalue().splitlines()
    assert lines[0] == "key:      abc"
    assert lines[1] == "function: f\\x0a[x]"
    assert lines[2] == "long:     " + "y" * 1999 + "…"
    assert lines[3] == "none:"


# -- JSON -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    key: str
    size: int
    path: Path


def test_json_is_one_valid_safe_document() -> None:
    output, out, _ = make(tty=True, json_mode=True)
    doc = {
        "when": dt.datetime(2026, 12, 10, 12, 0, tzinfo=dt.timezone.utc),
        "day": dt.date(2026, 12, 10),
        "path": Path("/tmp/x"),
        "blob": b"\x00\xff",
        "funcs": {"b", "a"},
        "row": Row("k\x1b]0;x\x07", 3, Path("bad\udc80")),
        "rows": [Row("[bold]x[/]", 1, Path("p"))],
        "name\n": "\u202eevil",
        "nan": float("nan"),
        "tuple": (1, 2),
    }
    output.json(doc)
    text = out.getvalue()
    assert text.endswith("}\n")
    for ch in RAW_CONTROLS:
        assert ch not in text
    parsed = json.loads(text)  # exactly one document, or this raises
    assert parsed["when"] == "2026-12-10T12:00:00+00:00"
    assert parsed["day"] == "2026-12-10"
    assert parsed["path"] == "/tmp/x"
    assert parsed["blob"] == "00ff"
    assert parsed["funcs"] == ["a", "b"]
    assert parsed["row"] == {"key": "k\\x1b]0;x\\x07", "size": 3, "path": "bad\\udc80"}
    assert parsed["rows"][0]["key"] == "[bold]x[/]"
    assert parsed["name\\x0a"] == "\\u202eevil"
    assert parsed["nan"] is None
    assert parsed["tuple"] == [1, 2]
    assert "\u2026" not in text  # JSON values are never truncated


def test_json_keeps_non_ascii_readable() -> None:
    output, out, _ = make(tty=False, json_mode=True)
    output.json({"name": "caf\u00e9 \u6f22"})
    assert "caf\u00e9 \u6f22" in out.getvalue()


# -- stderr ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tty", [True, False])
def test_error_is_one_plain_line_on_stderr(tty: bool) -> None:
    output, out, err = make(tty=tty)
    output.error("cannot read [bold]db[/]\nTraceback\x1b[31m " + "z" * 5000)
    assert out.getvalue() == ""
    text = err.getvalue()
    assert text.startswith("beautyspot: error: cannot read [bold]db[/]\\x0aTraceback\\x1b[31m ")
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "z" * 5000 in text  # errors are not truncated
    assert "\x1b" not in text


def test_warn_prefix() -> None:
    output, _, err = make(tty=False)
    output.warn("skipped x")
    assert err.getvalue() == "beautyspot: warning: skipped x\n"


def test_progress_silent_off_tty() -> None:
    output, out, err = make(tty=False)
    with output.progress(3, "gc") as bar:
        for _ in range(3):
            bar.advance()
        bar.advance(5)
    assert out.getvalue() == "" and err.getvalue() == ""


def test_progress_silent_in_json_mode() -> None:
    output, out, err = make(tty=True, json_mode=True)
    with output.progress(None, "gc") as bar:
        bar.advance()
    assert out.getvalue() == "" and err.getvalue() == ""


def test_progress_on_tty_goes_to_stderr() -> None:
    output, out, err = make(tty=True)
    with output.progress(2, "sweep [bold]x\x1b") as bar:
        bar.advance()
        bar.advance()
    assert out.getvalue() == ""
    assert "sweep [bold]x\\x1b" in err.getvalue()


@pytest.mark.parametrize(
    ("answer", "expected"), [("y\n", True), ("YES\n", True), ("n\n", False), ("\n", False)]
)
def test_confirm(answer: str, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    output, out, err = make(tty=True)
    assert output.confirm("Delete 3 rows from [b]x\x1b?") is expected
    assert err.getvalue().startswith("Delete 3 rows from [b]x\\x1b? [y/N] ")
    assert out.getvalue() == ""


def test_confirm_eof_is_no(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    output, _, _ = make(tty=True)
    assert output.confirm("Delete?") is False


# -- format_bytes / import cost -------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (None, "-"),
        (0, "0 B"),
        (512, "512 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (1500, "1.5 kB"),
        (12_300_000, "12.3 MB"),
        (4_000_000_000, "4.0 GB"),
        (999_960, "1.0 MB"),
        (-1500, "-1.5 kB"),
    ],
)
def test_format_bytes(n: int | None, expected: str) -> None:
    assert format_bytes(n) == expected


def test_import_does_not_load_rich() -> None:
    code = (
        "import sys, beautyspot.cli.render\n"
        "loaded = [m for m in sys.modules if m == 'rich' or m.startswith('rich.')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
