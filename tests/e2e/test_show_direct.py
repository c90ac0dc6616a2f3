"""``show`` run straight from the console script (no Typer) against the Typer app.

``beautyspot.cli.show.direct`` answers the common ``show`` forms without importing
Typer; ``BEAUTYSPOT_NO_DIRECT=1`` sends the same argv through the Typer app.  Every
case here runs both ways, as the installed command, and must give byte-identical
stdout, stderr and exit status: the direct path is an optimisation, never a second
behaviour.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hostile import make_hostile_workspace

from conftest import FIXTURE_NOW, UPSTREAM

BIN = Path(sys.executable).parent / "beautyspot"
NOW_ENV = FIXTURE_NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
HEAVY = (
    "typer",
    "click",
    "rich",
    "pydantic",
    "pandas",
    "beautyspot.maintenance",
    # Not heavy in themselves, but a fifth of show's start-up together (the value
    # classes are named tuples, the read-only side lives in beautyspot.reader).
    "dataclasses",
    "inspect",
    "typing",
    "queue",
    "beautyspot.db",
)

pytestmark = pytest.mark.skipif(not BIN.exists(), reason=f"{BIN} is not installed")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, BEAUTYSPOT_NOW=NOW_ENV, NO_COLOR="1", COLUMNS="100")
    for name in ("BEAUTYSPOT_WORKSPACE", "BEAUTYSPOT_NO_DIRECT", "_BEAUTYSPOT_COMPLETE"):
        env.pop(name, None)
    env.update(extra)
    return env


def _run(cwd: Path, argv: list[str], **env: str) -> tuple[int, bytes, bytes]:
    proc = subprocess.run(
        [str(BIN), *argv],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        env=_env(**env),
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cwd for every run: ``hostile/`` (the hostile workspace) and ``up/`` (upstream)."""
    base = tmp_path_factory.mktemp("show-direct")
    expect = make_hostile_workspace(base / "hostile", FIXTURE_NOW)
    (base / "keys.txt").write_text(repr(expect["keys"]))
    shutil.copytree(UPSTREAM, base / "up")
    return base


def _keys(root: Path) -> dict[str, str]:
    import ast

    return ast.literal_eval((root / "keys.txt").read_text())


def _cases(root: Path) -> list[tuple[list[str], dict[str, str]]]:
    hw = "hostile/.beautyspot"
    k = _keys(root)
    cases: list[tuple[list[str], dict[str, str]]] = []
    for key in k.values():
        cases.append((["-w", hw, "show", key], {}))
        cases.append((["-w", hw, "show", key, "--json"], {}))
    cases += [
        (["-w", hw, "show", "--raw", k["ext_top"]], {}),
        (["-w", hw, "show", k["bad_msgpack"], "--raw"], {}),
        (["-w", hw, "show", k["dangling"], "--raw"], {}),
        (["--workspace", hw, "show", "exp"], {}),  # a prefix
        (["--workspace=" + hw, "show", "e", "--json"], {}),  # ambiguous
        (["-w", hw, "show", "e"], {}),
        (["-w", hw, "show", "no-such-key"], {}),
        (["-w", hw, "--db", "hostile", "show", k["markup"]], {}),
        (["-w", hw, "show", k["markup"], "--db", "times"], {}),
        (["-w", hw, "show", k["markup"], "--db=hostile", "--json"], {}),
        (["--json", "-w", hw, "show", k["ansi"]], {}),
        (["--timeout", "2.5", "-w", hw, "show", k["newline"]], {}),
        (["--timeout=0", "-w", hw, "show", k["newline"]], {}),
        (["show", k["markup"]], {"BEAUTYSPOT_WORKSPACE": hw}),
        (["show", k["markup"], "-w", "nowhere"], {"BEAUTYSPOT_WORKSPACE": hw}),
        (["-w", "nowhere", "show", k["markup"]], {"BEAUTYSPOT_WORKSPACE": hw}),
        (["-w", hw, "show", k["markup"], "-w", "up"], {}),
        (["-w", "up", "show", "0"], {}),
        (["-w", "up", "show", "--db", "missing", "0"], {}),
        (["show", "0"], {}),  # no ./.beautyspot here
        (["-w", "up", "show", "0"], {"BEAUTYSPOT_NOW": "yesterday"}),
        # forms the direct path leaves to Typer: the answers must still agree
        (["-w", hw, "show"], {}),
        (["-w", hw, "show", ""], {}),
        (["-w", hw, "show", "a", "b"], {}),
        (["-w", hw, "show", "--", k["markup"]], {}),
        (["-w", hw, "show", "--help"], {}),
        (["-w", hw, "show", "--bogus", k["markup"]], {}),
        (["-w", "", "show", k["markup"]], {}),
        (["--timeout", "-1", "-w", hw, "show", k["markup"]], {}),
        (["--timeout", "x", "-w", hw, "show", k["markup"]], {}),
        (["-w" + hw, "show", k["markup"]], {}),
        (["-w", hw, "ls", "show"], {}),
        (["-w", hw, "show", k["markup"], "--workspace"], {}),
        (["show", k["markup"]], {"BEAUTYSPOT_WORKSPACE": ""}),
    ]
    return cases


def test_direct_show_matches_the_typer_app(root: Path) -> None:
    cases = _cases(root)
    assert len(cases) > 40
    for argv, env in cases:
        direct = _run(root, argv, **env)
        typer = _run(root, argv, BEAUTYSPOT_NO_DIRECT="1", **env)
        assert direct == typer, (argv, env, direct, typer)
        code, out, err = direct
        assert b"Traceback" not in out + err, (argv, err)
        assert code in (0, 1, 2), (argv, code, err)


def test_direct_show_answers_without_typer(root: Path) -> None:
    """The common forms really take the direct path: nothing heavy is imported."""
    probe = (
        "import sys\n"
        "names = set(sys.argv[1:])\n"
        "sys.argv = ARGV\n"
        "from beautyspot.cli import entry\n"
        "try:\n"
        "    entry.main()\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "heavy = sorted(set(sys.modules) & names)\n"
        "print('HEAVY', code, ' '.join(heavy), file=sys.stderr)\n"
    )
    k = _keys(root)
    for argv in (
        ["beautyspot", "-w", "hostile/.beautyspot", "show", k["markup"]],
        ["beautyspot", "-w", "hostile/.beautyspot", "show", k["ext_top"], "--json"],
        ["beautyspot", "--db", "hostile/.beautyspot/hostile.db", "show", "e"],
    ):
        # entry.main reads sys.argv: give it the console script's argv.
        code = probe.replace("ARGV", repr(argv))
        proc = subprocess.run(
            [sys.executable, "-c", code, *HEAVY],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
        )
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("HEAVY ") and last.split()[2:] == [], (argv, proc.stderr)


def test_explicit_workspace_beats_the_environment(root: Path) -> None:
    """``beautyspot -w DIR CMD`` uses DIR even with BEAUTYSPOT_WORKSPACE set (it used
    not to: the command's own --workspace read the variable and won)."""
    env = {"BEAUTYSPOT_WORKSPACE": "hostile/.beautyspot"}
    code, out, err = _run(root, ["-w", "up", "ls"], **env)
    assert code == 0, err
    assert out.decode().splitlines()[0] == "workspace up"
    code, out, err = _run(root, ["ls"], **env)
    assert out.decode().splitlines()[0] == "workspace hostile/.beautyspot"
