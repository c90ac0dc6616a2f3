"""The generated scripts in ``completions/``, sourced in real bash, zsh and fish.

* bash: source the script, look up the function ``complete -p beautyspot`` names, call
  it with ``COMP_WORDS``/``COMP_CWORD`` set as readline sets them, print ``COMPREPLY``;
* zsh: an interactive ``zsh -f`` in a pseudo-terminal (``zpty``) runs ``compinit``,
  sources the script and gets the line typed with a TAB; ``compadd`` is wrapped to record
  the matches the completion system really adds;
* fish: ``complete -C 'LINE'`` after sourcing the script.

A missing shell skips its tests (``.ci/setup-shells`` installs them in CI).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from completion_env import (  # noqa: F401 (fixtures)
    BIN,
    COMPLETIONS,
    clean_env,
    workspace_template_fixture,
    ws_fixture,
)

pytestmark = pytest.mark.skipif(not BIN.exists(), reason=f"{BIN} is not installed")

KEYS_3FA = ["3fa0c1", "3fa0c2", "3fa777", "3fa9d0"]
COMMANDS = {"ls", "show", "gc", "prune", "clear"}


def need(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"{shell} is not installed (bash .ci/setup-shells installs it)")
    return path


def run(argv: list[str], cwd: Path, **env: str) -> str:
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=clean_env(HOME=str(cwd), **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# --------------------------------------------------------------------------- bash

BASH_DRIVER = r"""
source "$1"; shift
spec=$(complete -p beautyspot) || exit 3
func=${spec##*-F }; func=${func%% *}
COMP_WORDS=("$@")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="${COMP_WORDS[*]}"
COMP_POINT=${#COMP_LINE}
"$func" beautyspot "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""


def bash_complete(cwd: Path, *words: str, **env: str) -> list[str]:
    bash = need("bash")
    out = run(
        [
            bash,
            "--norc",
            "--noprofile",
            "-c",
            BASH_DRIVER,
            "bash",
            str(COMPLETIONS / "beautyspot.bash"),
            "beautyspot",
            *words,
        ],
        cwd,
        **env,
    )
    return [line for line in out.split("\n") if line]


def test_bash(ws: Path) -> None:
    cwd = ws.parent
    assert bash_complete(cwd, "show", "3fa") == KEYS_3FA
    assert bash_complete(cwd, "show", "--db", "beta", "3f") == ["3fa777"]
    # readline splits --db=beta at the '='
    assert bash_complete(cwd, "show", "--db", "=", "beta", "3f") == ["3fa777"]
    assert bash_complete(cwd, "prune", "--func", "fetch_") == ["fetch_page", "fetch_user"]
    assert bash_complete(cwd, "--db", "") == ["alpha", "beta", "broken"]
    assert COMMANDS <= set(bash_complete(cwd, ""))
    assert bash_complete(cwd, "cl") == ["clear"]
    assert bash_complete(cwd, "show", "--ra") == ["--raw"]


# --------------------------------------------------------------------------- zsh

ZSH_INNER = r"""
PS1='' PROMPT='' RPROMPT=''
autoload -Uz compinit && compinit -u -D
source $BS_SCRIPT
functions[_bs_orig]=$functions[_beautyspot_completion]
_beautyspot_completion() { _bs_orig "$@"; local rc=$?; : >| $BS_OUT.fin; return rc; }
zstyle ':completion:*' list-prompt ''
zstyle ':completion:*' menu no
LISTMAX=100000
compadd() {
  if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return; fi
  local -a __hits
  builtin compadd -A __hits "$@"
  local h; for h in $__hits; do print -r -- $h >> $BS_OUT; done
  builtin compadd "$@"
}
print READY
"""

ZSH_DRIVER = r"""
zmodload zsh/zpty || exit 3
export BS_SCRIPT=$1 BS_OUT=$2
zpty z zsh -f -i
zpty -w z "source ${(q)3}"
zpty -r z junk '*READY*'
zpty -w -n z "$4"$'\t'
integer i
for i in {1..800}; do
  [[ -e $BS_OUT.fin ]] && break
  zpty -r -t z junk 2>/dev/null
  sleep 0.025
done
zpty -d z
[[ -e $BS_OUT.fin ]] || { print -u2 "zsh: completion did not finish"; exit 4 }
"""


def zsh_complete(cwd: Path, line: str, tmp: Path, **env: str) -> list[str]:
    zsh = need("zsh")
    inner = tmp / "inner.zsh"
    inner.write_text(ZSH_INNER)
    out = tmp / "matches"
    for stale in (out, tmp / "matches.fin"):
        stale.unlink(missing_ok=True)
    run(
        [
            zsh,
            "-f",
            "-c",
            ZSH_DRIVER,
            "zsh",
            str(COMPLETIONS / "beautyspot.zsh"),
            str(out),
            str(inner),
            line,
        ],
        cwd,
        **env,
    )
    return out.read_text().splitlines() if out.exists() else []


def test_zsh(ws: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("zsh")
    cwd = ws.parent
    assert sorted(zsh_complete(cwd, "beautyspot show 3fa", tmp)) == KEYS_3FA
    assert sorted(zsh_complete(cwd, "beautyspot ls --func fetch_", tmp)) == [
        "fetch_page",
        "fetch_user",
    ]
    assert sorted(zsh_complete(cwd, "beautyspot --db ", tmp)) == ["alpha", "beta", "broken"]
    assert COMMANDS <= set(zsh_complete(cwd, "beautyspot ", tmp))
    assert zsh_complete(cwd, "beautyspot show --ra", tmp) == ["--raw"]
    # No candidate: the script answers _files, and zsh offers the directory's files.
    assert zsh_complete(cwd, "beautyspot show zz", tmp) == []
    assert "notes.txt" in zsh_complete(cwd, "beautyspot -w /nonexistent show n", tmp)


def test_zsh_script_sources_cleanly(ws: Path) -> None:
    zsh = need("zsh")
    script = COMPLETIONS / "beautyspot.zsh"
    out = subprocess.run(
        [
            zsh,
            "-f",
            "-c",
            f"autoload -Uz compinit && compinit -u -D && source {script} "
            "&& print -r -- ${_comps[beautyspot]}",
        ],
        cwd=ws.parent,
        env=clean_env(HOME=str(ws.parent)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (out.returncode, out.stderr, out.stdout) == (0, "", "_beautyspot_completion\n")


# --------------------------------------------------------------------------- fish


def fish_complete(cwd: Path, line: str, **env: str) -> list[str]:
    fish = need("fish")
    script = COMPLETIONS / "beautyspot.fish"
    out = run(
        [fish, "--no-config", "-c", "source $argv[1]; complete -C $argv[2]", str(script), line],
        cwd,
        **env,
    )
    # fish orders candidates itself (numbers in them numerically): compare sorted
    return sorted(entry.split("\t")[0] for entry in out.split("\n") if entry)


def test_fish(ws: Path) -> None:
    cwd = ws.parent
    assert fish_complete(cwd, "beautyspot show 3fa") == KEYS_3FA
    assert fish_complete(cwd, "beautyspot prune -f fetch_") == ["fetch_page", "fetch_user"]
    assert fish_complete(cwd, "beautyspot show --db ") == ["alpha", "beta", "broken"]
    assert COMMANDS <= set(fish_complete(cwd, "beautyspot "))
    assert fish_complete(cwd, "beautyspot show --ra") == ["--raw"]
    # No candidate: the condition fails and fish completes files.
    assert "notes.txt" in fish_complete(cwd, "beautyspot -w /nonexistent show n")
