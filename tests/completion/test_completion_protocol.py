"""The completion fast path, through the installed ``beautyspot`` and each env protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
from completion_env import (  # noqa: F401 (fixtures)
    BIN,
    COMPLETIONS,
    run_complete,
    workspace_template_fixture,
    write_db,
    ws_fixture,
)

pytestmark = pytest.mark.skipif(not BIN.exists(), reason=f"{BIN} is not installed")

COMMANDS = ["ls", "show", "gc", "prune", "clear"]  # at least these; others may follow


def zsh_values(out: str) -> list[str]:
    """Values from Typer's zsh answer: ``_arguments '*: :(("v":"help" ...))'``."""
    if out.strip() == "_files":
        return []
    assert out.startswith("_arguments '*: :((") and out.endswith("))'\n"), out
    body = out[len("_arguments '*: :((") : -len("))'\n")]
    return [line.split('":"', 1)[0].strip('"') for line in body.split("\n")]


def bash(cwd: Path, line: str, **env: str) -> list[str]:
    words = line.split(" ")
    proc = run_complete(
        cwd,
        _BEAUTYSPOT_COMPLETE="complete_bash",
        COMP_WORDS=line,
        COMP_CWORD=str(len(words) - 1),
        **env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return [v for v in proc.stdout.split("\n") if v]


def zsh(cwd: Path, line: str, **env: str) -> list[str]:
    proc = run_complete(cwd, _BEAUTYSPOT_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS=line, **env)
    assert proc.returncode == 0, proc.stderr
    return zsh_values(proc.stdout)


def fish(cwd: Path, line: str, action: str = "get-args", **env: str):
    return run_complete(
        cwd,
        _BEAUTYSPOT_COMPLETE="complete_fish",
        _TYPER_COMPLETE_FISH_ACTION=action,
        _TYPER_COMPLETE_ARGS=line,
        **env,
    )


def test_key_prefix_across_all_dbs(ws: Path) -> None:
    cwd = ws.parent
    assert bash(cwd, "beautyspot show 3fa") == ["3fa0c1", "3fa0c2", "3fa777", "3fa9d0"]
    assert zsh(cwd, "beautyspot show 3fa0") == ["3fa0c1", "3fa0c2"]
    assert bash(cwd, "beautyspot show zz") == []


def test_key_prefix_in_the_db_named_on_the_line(ws: Path) -> None:
    cwd = ws.parent
    assert bash(cwd, "beautyspot show --db alpha 3fa") == ["3fa0c1", "3fa0c2", "3fa9d0"]
    assert bash(cwd, "beautyspot --db beta show 3fa") == ["3fa777"]
    assert bash(cwd, f"beautyspot show --db {ws / 'beta.sqlite'} 3f") == ["3fa777"]
    assert bash(cwd, "beautyspot show --db=beta 3f") == ["3fa777"]
    assert bash(cwd, "beautyspot show --db nosuch 3f") == []


def test_workspace_from_line_then_env_then_default(ws: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    write_db(other / "only.db", [("3fa000", "f", None)])
    cwd = ws.parent
    assert bash(cwd, f"beautyspot -w {other} show 3fa") == ["3fa000"]
    assert bash(cwd, f"beautyspot show --workspace {other} 3fa") == ["3fa000"]
    assert bash(cwd, "beautyspot show 3fa", BEAUTYSPOT_WORKSPACE=str(other)) == ["3fa000"]
    # The line wins over the environment.
    assert bash(cwd, f"beautyspot -w {ws} show 3fa7", BEAUTYSPOT_WORKSPACE=str(other)) == ["3fa777"]


def test_function_names(ws: Path) -> None:
    cwd = ws.parent
    assert bash(cwd, "beautyspot prune --func fetch") == ["fetch_page", "fetch_user"]
    assert bash(cwd, "beautyspot clear -f app.web.") == [
        "app.web.fetch_page",
        "app.web.fetch_user",
    ]
    assert bash(cwd, "beautyspot ls alpha --func s") == []  # score_doc is in beta only
    assert bash(cwd, "beautyspot ls beta --func s") == ["score_doc"]
    assert zsh(cwd, "beautyspot --db beta prune --func ") == ["app.rank.score_doc", "score_doc"]


def test_db_names_and_paths(ws: Path) -> None:
    cwd = ws.parent
    assert bash(cwd, "beautyspot --db ") == ["alpha", "beta", "broken"]
    assert bash(cwd, "beautyspot gc --db a") == ["alpha"]
    assert bash(cwd, "beautyspot ls ") == ["alpha", "beta", "broken"]
    assert bash(cwd, "beautyspot show --db .beautyspot/") == [
        ".beautyspot/alpha.db",
        ".beautyspot/beta.sqlite",
        ".beautyspot/broken.db",
    ]


def test_subcommands_and_options(ws: Path) -> None:
    cwd = ws.parent
    names = bash(cwd, "beautyspot ")
    assert names[: len(COMMANDS)] == COMMANDS
    assert bash(cwd, "beautyspot pr") == ["prune"]
    assert bash(cwd, "beautyspot show --r") == ["--raw"]
    assert bash(cwd, "beautyspot --js") == ["--json"]
    # An option already given is not offered again.
    assert "--json" not in bash(cwd, "beautyspot gc --json --")
    assert "--dry-run" in bash(cwd, "beautyspot gc --json --")


def test_missing_workspace_gives_nothing_and_creates_nothing(tmp_path: Path) -> None:
    before = sorted(tmp_path.rglob("*"))
    assert bash(tmp_path, "beautyspot show 3f") == []
    assert bash(tmp_path, "beautyspot --db ") == []
    assert zsh(tmp_path, "beautyspot show ") == []  # _files: the shell offers files
    assert bash(tmp_path, "beautyspot -w /nonexistent/ws show 3f") == []
    assert sorted(tmp_path.rglob("*")) == before


def test_completion_touches_no_file(ws: Path) -> None:
    def tree() -> dict[str, tuple[int, int]]:
        return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in ws.parent.rglob("*")}

    before = tree()
    bash(ws.parent, "beautyspot show 3")
    bash(ws.parent, "beautyspot clear --func f")
    assert tree() == before


def test_bounded_and_sorted(tmp_path: Path) -> None:
    root = tmp_path / ".beautyspot"
    root.mkdir()
    keys = [f"k{i:03d}" for i in range(120)]
    write_db(root / "a.db", [(k, "f", None) for k in keys[::2]])
    write_db(root / "b.db", [(k, "f", None) for k in keys[1::2]])
    got = bash(tmp_path, "beautyspot show k")
    assert got == keys[:50]


def test_fish_protocol(ws: Path) -> None:
    cwd = ws.parent
    proc = fish(cwd, "beautyspot show 3fa9")
    assert (proc.returncode, proc.stdout) == (0, "3fa9d0\n")
    proc = fish(cwd, "beautyspot pr")
    assert proc.stdout.startswith("prune\tDelete tasks last updated before a cutoff")
    # The --condition call: exit 0 (no files) with candidates, 1 (files) without.
    assert fish(cwd, "beautyspot show 3fa", "is-args").returncode == 0
    assert fish(cwd, "beautyspot show zz", "is-args").returncode == 1


def test_click8_protocol(ws: Path) -> None:
    """``bash_complete`` etc. (plain Click's names) are answered in Click's formats."""
    proc = run_complete(
        ws.parent,
        _BEAUTYSPOT_COMPLETE="bash_complete",
        COMP_WORDS="beautyspot show 3fa0",
        COMP_CWORD="2",
    )
    assert (proc.returncode, proc.stdout) == (0, "plain,3fa0c1\nplain,3fa0c2\n")
    proc = run_complete(
        ws.parent,
        _BEAUTYSPOT_COMPLETE="zsh_complete",
        COMP_WORDS="beautyspot show --ra",
        COMP_CWORD="2",
    )
    assert proc.stdout == "plain\n--raw\nWrite the raw payload bytes to stdout.\n"
    proc = run_complete(
        ws.parent,
        _BEAUTYSPOT_COMPLETE="fish_complete",
        COMP_WORDS="beautyspot show 3fa0",
        COMP_CWORD="3fa0",
    )
    assert proc.stdout == "plain,3fa0c1\nplain,3fa0c2\n"


def test_source_instruction_goes_to_typer(ws: Path) -> None:
    for shell in ("bash", "zsh", "fish"):
        proc = run_complete(ws.parent, _BEAUTYSPOT_COMPLETE=f"source_{shell}")
        assert proc.returncode == 0, proc.stderr
        expected = (COMPLETIONS / f"beautyspot.{shell}").read_text()
        assert proc.stdout.strip() == expected.strip()


def test_malformed_request_is_typer_s_to_report(ws: Path) -> None:
    proc = run_complete(ws.parent, _BEAUTYSPOT_COMPLETE="complete_bash", COMP_WORDS="x")
    assert proc.returncode != 0  # no COMP_CWORD: Typer's own error, not a guess


def test_a_slow_query_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A TAB press never waits long: past QUERY_BUDGET, a DB's query is interrupted."""
    import sqlite3

    from beautyspot import sql
    from beautyspot.cli import complete

    root = tmp_path / ".beautyspot"
    root.mkdir()
    with sqlite3.connect(root / "big.db") as conn:
        conn.execute(sql.CREATE_TABLE)
        conn.executemany(
            "INSERT INTO tasks (cache_key, func_name) VALUES (?, ?)",
            [(f"k{i:06d}", f"f{i % 7}") for i in range(30_000)],
        )
    conn.close()
    monkeypatch.chdir(tmp_path)
    # func_name has no index: a scan of every row, so well past 10k SQLite VM steps
    assert complete.candidates(["prune", "--func"], "f", {})[:2] == [
        ("f0", None, "plain"),
        ("f1", None, "plain"),
    ]
    monkeypatch.setattr(complete, "QUERY_BUDGET", -1.0)
    assert complete.candidates(["prune", "--func"], "f", {}) == []
