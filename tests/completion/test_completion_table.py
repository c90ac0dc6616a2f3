"""The fast path's command table against the Typer app, and its answers against Typer's.

``beautyspot.cli._completion_table`` is generated; these tests fail when it drifts from
``typer.main.get_command(app)``: same commands, options (names, arity, help), arguments.
Then, for every command and a set of option prefixes, the fast path must print exactly
what Typer's own completion classes print for the same request (the slow path the fast
path replaces).  Typer passes help texts through Rich markup rendering, which eats
``[default: ...]``; the fast path shows them literally, so that step is disabled here.
"""

from __future__ import annotations

import io

import pytest
import typer.main

from beautyspot import workspace
from beautyspot.cli import complete
from beautyspot.cli._completion_table import COMMANDS
from beautyspot.cli.app import app


def _walk(cmd, path=(), parent=None):
    ctx = cmd.make_context(
        path[-1] if path else "beautyspot", [], parent=parent, resilient_parsing=True
    )
    yield path, cmd, ctx
    if hasattr(cmd, "list_commands"):
        for name in cmd.list_commands(ctx):
            yield from _walk(cmd.get_command(ctx, name), (*path, name), ctx)


def test_table_matches_the_typer_app() -> None:
    seen = set()
    for path, cmd, ctx in _walk(typer.main.get_command(app)):
        key = " ".join(path)
        seen.add(key)
        node = COMMANDS[key]
        params = cmd.get_params(ctx)
        options = [p for p in params if p.param_type_name == "option"]
        arguments = [p for p in params if p.param_type_name == "argument"]
        assert [o["name"] for o in node["options"]] == [p.name for p in options], key
        help_option = cmd.get_help_option(ctx)
        for entry, p in zip(node["options"], options, strict=True):
            if p is help_option:  # Click builds it from a set: its order varies per process
                assert sorted(entry["opts"]) == sorted(p.opts)
            else:
                assert entry["opts"] == (*p.opts, *p.secondary_opts)
            assert entry["nargs"] == (0 if p.is_flag or p.count else p.nargs), p.name
            assert entry["multiple"] == p.multiple
            assert entry["hidden"] == p.hidden
            assert entry["help"] == (p.help or None)
        assert [(a["name"], a["nargs"]) for a in node["arguments"]] == [
            (p.name, p.nargs) for p in arguments
        ], key
        subs = cmd.list_commands(ctx) if hasattr(cmd, "list_commands") else []
        assert node["group"] == hasattr(cmd, "list_commands")
        assert [c[0] for c in node["commands"]] == subs, key
        for name, help_, hidden in node["commands"]:
            sub = cmd.get_command(ctx, name)
            assert (help_ or "", hidden) == (sub.get_short_help_str(), sub.hidden)
    assert seen == set(COMMANDS)


def test_dynamic_parameters_are_wired() -> None:
    """The parameters SPEC §6 names complete from the workspace."""
    show = COMMANDS["show"]
    assert [a["complete"] for a in show["arguments"]] == ["keys"]
    kinds = {o["opts"][0]: o["complete"] for o in COMMANDS[""]["options"]}
    assert kinds["--workspace"] == "workspace" and kinds["--db"] == "dbs"
    for key, node in COMMANDS.items():
        for option in node["options"]:
            if "--func" in option["opts"]:
                assert option["complete"] == "functions", key
            if "--db" in option["opts"]:
                assert option["complete"] == "dbs", key
    assert COMMANDS["ls"]["arguments"][0]["complete"] == "dbs"
    assert complete.DB_SUFFIXES == workspace.DB_SUFFIXES


def _lines() -> list[str]:
    """Command lines whose answers need no workspace: commands and option names."""
    lines = [
        "beautyspot ",
        "beautyspot -",
        "beautyspot --",
        "beautyspot --j",
        "beautyspot x",
        "beautyspot --json ",
        "beautyspot -w ws ",
        "beautyspot --db x --",
        "beautyspot nosuch -",
        "beautyspot --timeout ",
    ]
    for key, node in COMMANDS.items():
        if not key:
            continue
        lines += [f"beautyspot {key} -", f"beautyspot {key} --", f"beautyspot --json {key} --"]
        for option in node["options"]:
            name = option["opts"][0]
            lines.append(f"beautyspot {key} {name[:3]}")
            if option["nargs"] == 0:
                lines.append(f"beautyspot {key} {name} -")
            else:
                lines.append(f"beautyspot {key} {name} value --")
    return lines


@pytest.fixture
def typer_classes(monkeypatch):
    tc = pytest.importorskip("typer._completion_classes")
    monkeypatch.setattr(tc, "_sanitize_help_text", lambda text: text)
    return tc


def _typer_cli():
    """The app's Click command, its help options' names in the table's order.

    Click builds a help option from a set of names, so whether ``-h`` or ``--help`` comes
    first varies from process to process; the table fixes one order.
    """
    cli = typer.main.get_command(app)
    for path, cmd, ctx in _walk(cli):
        help_option = cmd.get_help_option(ctx)
        if help_option is not None:
            entry = next(o for o in COMMANDS[" ".join(path)]["options"] if o["name"] == "help")
            help_option.opts = list(entry["opts"])
    return cli


def _typer_answer(cls, cli, monkeypatch, env: dict[str, str]) -> str:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = cls(cli, {}, "beautyspot", "_BEAUTYSPOT_COMPLETE").complete() + "\n"
    for k in env:
        monkeypatch.delenv(k)
    return out


def _fast_answer(env: dict[str, str]) -> str:
    buf = io.BytesIO()
    assert complete.answer(env, buf) == 0
    return buf.getvalue().decode("utf-8")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish", "powershell"])
def test_fast_path_prints_what_typer_prints(shell, typer_classes, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no workspace here: only names can be answered
    cls = {
        "bash": typer_classes.BashComplete,
        "zsh": typer_classes.ZshComplete,
        "fish": typer_classes.FishComplete,
        "powershell": typer_classes.PowerShellComplete,
    }[shell]
    cli = _typer_cli()
    for line in _lines():
        if shell == "bash":
            words = line.split(" ")
            env = {"COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
        elif shell == "powershell":
            incomplete = line.rsplit(" ", 1)[1]
            env = {"_TYPER_COMPLETE_ARGS": line, "_TYPER_COMPLETE_WORD_TO_COMPLETE": incomplete}
        else:
            env = {"_TYPER_COMPLETE_ARGS": line}
            if shell == "fish":
                env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
        expected = _typer_answer(cls, cli, monkeypatch, env)
        got = _fast_answer({**env, "_BEAUTYSPOT_COMPLETE": f"complete_{shell}"})
        assert got == expected, (shell, line)
