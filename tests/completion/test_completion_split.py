"""The fast path's command-line splitter against Click's (shlex-based) one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from typer._click.shell_completion import split_arg_string as click_split

from beautyspot.cli.complete import split_arg_string

LINES = st.text(alphabet=st.sampled_from("ab3- =\t\n\r'\"\\$é"), max_size=40)


@settings(max_examples=3000, deadline=None)
@given(LINES)
def test_split_matches_click(line: str) -> None:
    assert split_arg_string(line) == click_split(line)


def test_split_examples() -> None:
    for line in [
        "beautyspot show 3fa",
        "beautyspot show ",
        "beautyspot -w 'my ws' show 'ab",
        'beautyspot --db "a\\"b" x\\ y',
        "beautyspot ''",
        "a\\",
        '"a\\',
        "",
    ]:
        assert split_arg_string(line) == click_split(line), line
