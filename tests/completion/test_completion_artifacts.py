"""Generated artifacts (completions/, man/, the completion table) and the fast path's imports."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from completion_env import BIN, BIN_DIR, COMPLETIONS, REPO, clean_env

from beautyspot.cli.app import app

GEN = REPO / "scripts" / "gen_artifacts.py"
MAN = REPO / "man"
HEAVY = ("typer", "click", "rich", "pandas", "numpy", "msgpack", "shellingham", "pydantic")
# What a completion request must not pay for either: the full DB layer and its imports.
SLOW = HEAVY + (
    "typing",
    "dataclasses",
    "logging",
    "urllib",
    "shlex",
    "beautyspot.db",
    "beautyspot.sql",
    "beautyspot.workspace",
)


def test_gen_artifacts_check_passes() -> None:
    proc = subprocess.run(
        [sys.executable, str(GEN), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert proc.returncode == 0, proc.stderr


def test_gen_artifacts_check_names_stale_files(tmp_path: Path) -> None:
    """--check on a copy of the repo with one page edited and one extra page."""
    copy = tmp_path / "repo"
    for part in ("scripts", "man", "completions", "src"):
        shutil.copytree(REPO / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    page = copy / "man" / "beautyspot-gc.1"
    page.write_text(page.read_text().replace("cron", "CRON"))
    (copy / "man" / "beautyspot-gone.1").write_text(".TH GONE 1\n")
    proc = subprocess.run(
        [sys.executable, str(copy / "scripts" / "gen_artifacts.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert proc.returncode == 1
    assert "man/beautyspot-gc.1 (stale)" in proc.stderr
    assert "man/beautyspot-gone.1 (no longer generated)" in proc.stderr
    assert "--update" in proc.stderr


def test_man_pages_are_dated_from_source_date_epoch() -> None:
    code = (
        "import sys; sys.path.insert(0, 'scripts'); import gen_artifacts as g;print(g.man_date())"
    )
    for epoch, date in (("0", "1970-01-01"), ("1700000000", "2023-11-14")):
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            capture_output=True,
            text=True,
            env=clean_env(SOURCE_DATE_EPOCH=epoch),
            timeout=60,
        )
        assert proc.stdout.strip() == date, proc.stderr
    unset = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={k: v for k, v in clean_env().items() if k != "SOURCE_DATE_EPOCH"},
        timeout=60,
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\d\n", unset.stdout)
    assert f'"{unset.stdout.strip()}"' in (MAN / "beautyspot.1").read_text()


def _roff_text(page: Path) -> str:
    """The page's text with roff escapes undone (enough to find option names)."""
    text = page.read_text()
    text = re.sub(r"\\f[BIRP]", "", text)
    return text.replace("\\-", "-").replace("\\e", "\\").replace("\\&", "")


def _commands():
    cli = typer.main.get_command(app)
    ctx = cli.make_context("beautyspot", [], resilient_parsing=True)
    yield "beautyspot", cli, ctx
    for name in cli.list_commands(ctx):
        sub = cli.get_command(ctx, name)
        yield (
            f"beautyspot-{name}",
            sub,
            sub.make_context(name, [], parent=ctx, resilient_parsing=True),
        )


def test_every_command_and_option_is_in_its_man_page() -> None:
    root = _roff_text(MAN / "beautyspot.1")
    for page, cmd, ctx in _commands():
        text = _roff_text(MAN / f"{page}.1")
        assert f".TH {page.upper()} 1 " in text
        for section in (
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "EXIT STATUS",
            "ENVIRONMENT",
            "FILES",
            "EXAMPLES",
            "SEE ALSO",
        ):
            assert f"\n.SH {section}\n" in text, (page, section)
        for param in cmd.get_params(ctx):
            if param.param_type_name == "option" and not param.hidden:
                for name in (*param.opts, *param.secondary_opts):
                    assert re.search(rf"(^|[ ,]){re.escape(name)}\b", text, re.M), (page, name)
        if page != "beautyspot":
            assert f"{page}(1)" in root
            assert cmd.name in root
    for text in (
        "BEAUTYSPOT_WORKSPACE",
        "BEAUTYSPOT_NOW",
        ".beautyspot.lock",
        "0 3 * * * beautyspot -w /srv/app/.beautyspot gc",
        "beautyspot prune --older-than 30d --dry-run",
        "--install-completion",
        "--show-completion",
    ):
        assert text in root, text


def test_man_pages_render_without_warnings() -> None:
    man = shutil.which("man")
    if man is None:
        pytest.skip("man is not installed (apt-get install man-db groff-base)")
    for page in sorted(MAN.glob("*.1")):
        proc = subprocess.run(
            [man, "-l", str(page)],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(MANWIDTH="80", MAN_KEEP_FORMATTING="0", PAGER="cat"),
        )
        assert proc.returncode == 0 and proc.stderr == "", (page, proc.stderr)
        assert "EXIT STATUS" in re.sub(".\x08", "", proc.stdout)  # undo overstriking
    groff = shutil.which("groff")
    if groff is not None:  # all warnings on, no output
        for page in sorted(MAN.glob("*.1")):
            proc = subprocess.run(
                [groff, "-man", "-ww", "-z", str(page)], capture_output=True, text=True, timeout=60
            )
            assert (proc.returncode, proc.stderr) == (0, ""), (page, proc.stderr)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_completion_prints_the_shipped_script(shell: str, tmp_path: Path) -> None:
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed")
    # A second command keeps the shell alive as the parent Typer detects the shell from.
    argv = [exe, "-c", f"{BIN} --show-completion; true"]
    if shell == "zsh":
        argv.insert(1, "-f")
    if shell == "fish":
        argv.insert(1, "--no-config")
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env=clean_env(HOME=str(tmp_path))
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (COMPLETIONS / f"beautyspot.{shell}").read_text()


def test_install_completion_installs_the_shipped_script(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    proc = subprocess.run(
        [bash, "-c", f"{BIN} --install-completion; true"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(HOME=str(tmp_path)),
    )
    assert proc.returncode == 0, proc.stderr
    installed = tmp_path / ".bash_completions" / "beautyspot.sh"
    assert installed.read_text().strip() == (COMPLETIONS / "beautyspot.bash").read_text().strip()
    assert f"source '{installed}'" in (tmp_path / ".bashrc").read_text()


def test_completion_request_imports_nothing_heavy(tmp_path: Path) -> None:
    """The whole request, from the console-script entry point: no Typer, Rich, pandas..."""
    code = (
        "import os, sys\n"
        "from beautyspot.cli import entry\n"
        "try:\n"
        "    entry.main()\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "names = set(sys.modules) | {m.split('.')[0] for m in sys.modules}\n"
        "heavy = sorted(names & set(sys.argv[1:]))\n"
        "print('HEAVY', code, ' '.join(heavy), file=sys.stderr)\n"
    )
    (tmp_path / ".beautyspot").mkdir()
    for words, cword in (
        ("beautyspot show 3f", "2"),
        ("beautyspot prune --func f", "3"),
        ("beautyspot --db ", "2"),
        ("beautyspot ", "1"),
    ):
        proc = subprocess.run(
            [sys.executable, "-c", code, *HEAVY],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(_BEAUTYSPOT_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=cword),
        )
        assert proc.stderr.strip().splitlines()[-1] == "HEAVY 0", (words, proc.stderr)


def test_modules_on_the_completion_path_import_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import beautyspot.cli.complete, beautyspot.db, beautyspot.sql, beautyspot.workspace\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:]))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *HEAVY],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert (proc.returncode, proc.stdout) == (0, "\n"), proc.stderr
    assert BIN_DIR.exists()
