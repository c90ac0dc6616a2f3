"""MessagePack decoding and previews: round trips, hostile payloads, upstream blobs."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beautyspot.errors import DecodeError
from beautyspot.serializer import ExtPlaceholder, decode_preview, dumps, loads, preview

_REPO_ROOT = Path(__file__).resolve().parents[2]
_REPO_FIXTURE = _REPO_ROOT / "tests" / "fixtures" / "upstream-2.7.7"
_SHARED_FIXTURE = _REPO_ROOT.parent / "shared" / "fixtures" / "upstream-2.7.7"
# The lead copies the upstream workspace into the repo; until then use the shared copy.
UPSTREAM_FIXTURE = _REPO_FIXTURE if _REPO_FIXTURE.is_dir() else _SHARED_FIXTURE
UPSTREAM_ETL_BLOBS = UPSTREAM_FIXTURE / ".beautyspot" / "blobs" / "etl"

_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
msgpack_values = st.recursive(
    _leaves,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text() | st.integers(-(2**31), 2**31), children, max_size=5)
    ),
    max_leaves=30,
)


def _nested_list(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def _nested_dict(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"k": value}
    return value


# ------------------------------------------------------------------------------ loads


@given(msgpack_values)
def test_round_trip(value):
    assert loads(dumps(value)) == value


@given(msgpack_values)
def test_dumps_matches_upstream_encoding(value):
    assert dumps(value) == msgpack.packb(value, use_bin_type=True)


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes):
    try:
        value = loads(data)
    except DecodeError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(preview(value), str)


def test_tuples_come_back_as_lists():
    assert loads(dumps({"t": (1, (2, 3))})) == {"t": [1, [2, 3]]}


def test_ext_placeholder_text_is_exact():
    placeholder = ExtPlaceholder(code=5, size=3)
    assert str(placeholder) == "<ext code=5, 3 bytes>"
    assert repr(placeholder) == "<ext code=5, 3 bytes>"
    assert f"{[placeholder]}" == "[<ext code=5, 3 bytes>]"
    with pytest.raises(AttributeError):
        placeholder.code = 6  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del placeholder.size
    # A value of its own: not a tuple (a preview would print it as a list), equal only
    # to an equal placeholder.
    assert not isinstance(placeholder, tuple)
    assert placeholder != (5, 3) and placeholder == ExtPlaceholder(5, 3)
    assert placeholder != ExtPlaceholder(5, 4)
    assert len({placeholder, ExtPlaceholder(5, 3)}) == 1


def test_unknown_ext_types_become_placeholders():
    payload = msgpack.packb(
        {"obj": msgpack.ExtType(42, b"abcdef"), "empty": msgpack.ExtType(0, b"")},
        use_bin_type=True,
    )
    assert loads(payload) == {"obj": ExtPlaceholder(42, 6), "empty": ExtPlaceholder(0, 0)}
    # fixext 1 with a negative (reserved) code, which packb refuses to write
    assert loads(b"\xd4\xfb\x00") == ExtPlaceholder(-5, 1)
    assert preview(loads(b"\xd4\xfb\x00")) == "<ext code=-5, 1 bytes>"


def test_ext_placeholder_as_map_key():
    payload = msgpack.packb({msgpack.ExtType(3, b"xy"): 1}, use_bin_type=True)
    assert loads(payload) == {ExtPlaceholder(3, 2): 1}


def test_msgpack_timestamp_is_decoded():
    value = loads(msgpack.packb(msgpack.Timestamp(1, 0)))
    assert value == msgpack.Timestamp(1, 0)
    assert preview(value) == "1970-01-01T00:00:01+00:00"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x92\x01", "truncated"),  # array of 2, one element present
        (b"\xa5ab", "truncated"),  # str of 5, two bytes present
        (b"\xdb\xff\xff\xff\xff", "truncated"),  # str32 claiming 4 GiB
        (b"\x01\x02\x03", "trailing"),
        (msgpack.packb({"rows": [1, 2]}) + b"garbage", "trailing"),
        (b"\xc1", "format"),  # the one never-used format byte
        (b"\xd4\xff\x00", "timestamp"),  # timestamp ext of bad length
        (b"\x91" * 5000 + b"\x90", "nesting"),  # deeper than msgpack's stack
        (b"SQLite format 3\x00", ""),
    ],
)
def test_corrupt_payloads_raise_decode_error(data: bytes, reason: str):
    with pytest.raises(DecodeError) as info:
        loads(data)
    message = str(info.value)
    assert message.startswith("not valid MessagePack")
    assert reason in message
    assert "\n" not in message


def test_truncated_real_payload_raises_decode_error():
    payload = dumps({"rows": [[i, f"name-{i}"] for i in range(50)]})
    for cut in (1, len(payload) // 2, len(payload) - 1):
        with pytest.raises(DecodeError):
            loads(payload[:cut])


def test_non_bytes_input_raises_decode_error():
    with pytest.raises(DecodeError, match="expected bytes, got str"):
        loads("\x81\xa1a\x01")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        loads(None)  # type: ignore[arg-type]


def test_bytearray_and_memoryview_accepted():
    payload = dumps([1, "two"])
    assert loads(bytearray(payload)) == [1, "two"]
    assert loads(memoryview(payload)) == [1, "two"]


def test_invalid_utf8_strings_are_backslash_escaped_not_fatal():
    # map {str b"\xff\xfe": str b"\xc3("} -- both strings hold invalid UTF-8
    value = loads(b"\x81\xa2\xff\xfe\xa2\xc3\x28")
    assert value == {"\\xff\\xfe": "\\xc3("}
    # bin values stay bytes: the fallback does not blur str and bin
    assert loads(dumps([b"\xff", "ok"])) == [b"\xff", "ok"]


def test_array_and_map_keys_become_tuples():
    assert loads(msgpack.packb({(1, 2): "x"})) == {(1, 2): "x"}
    # map {{"a": 1}: "y"} written by hand, packb cannot produce it
    assert loads(b"\x81\x81\xa1a\x01\xa1y") == {(("a", 1),): "y"}


def test_map_keys_of_any_scalar_type():
    assert loads(dumps({1: "a", None: "b", 1.5: "c", b"k": "d"})) == {
        1: "a",
        None: "b",
        1.5: "c",
        b"k": "d",
    }


# ---------------------------------------------------------------------------- preview


def test_preview_dict_is_pretty_json():
    assert preview({"name": "ä", "n": [1, None, True]}) == (
        '{\n  "name": "ä",\n  "n": [\n    1,\n    null,\n    true\n  ]\n}'
    )


def test_preview_list_and_scalars():
    assert preview([1, 2.5, "x"]) == '[\n  1,\n  2.5,\n  "x"\n]'
    assert preview(None) == "null"
    assert preview(True) == "true"
    assert preview(42) == "42"
    assert preview(float("nan")) == "NaN"


def test_preview_str_is_plain_text():
    assert preview("line 1\nline 2 – ünïcode") == "line 1\nline 2 – ünïcode"


def test_preview_bytes_is_hex():
    assert preview(b"\x00\xff\x10") == "00 ff 10"
    assert preview(b"") == "<0 bytes>"
    assert preview(bytes(range(256)), max_chars=11) == "00 01 02 03… (756 more chars)"


def test_preview_ext():
    assert preview(ExtPlaceholder(7, 1024)) == "<ext code=7, 1024 bytes>"


def test_preview_nested_special_values_and_non_str_keys():
    value = {
        1: b"\x01\x02",
        None: ExtPlaceholder(9, 4),
        b"key": [(1, 2)],
        (1, 2): {3},
        "big": bytes(100),
    }
    parsed = json.loads(preview(value, max_chars=10_000))
    assert parsed == {
        "1": "<2 bytes: 01 02>",
        "None": "<ext code=9, 4 bytes>",
        "b'key'": [[1, 2]],
        "(1, 2)": [3],
        "big": "<100 bytes: " + " ".join(["00"] * 32) + "…>",
    }


def test_preview_truncates_with_exact_note():
    assert preview("a" * 30, max_chars=10) == "aaaaaaaaaa… (20 more chars)"
    assert preview("a" * 10, max_chars=10) == "a" * 10
    text = preview({"k": "v" * 5000})
    assert text.startswith('{\n  "k": "vvv')
    assert text.endswith(f"… ({len(json.dumps({'k': 'v' * 5000}, indent=2)) - 2000} more chars)")
    assert preview("abc", max_chars=0) == "… (3 more chars)"
    assert preview("abc", max_chars=-5) == "… (3 more chars)"


@pytest.mark.parametrize("make", [_nested_list, _nested_dict])
def test_preview_survives_hostile_depth(make):
    value = make(10_000)
    text = preview(value, max_chars=100)
    assert len(text) < 200
    assert text.startswith("[[[[" if isinstance(value, list) else '{"k": {"k": ')
    assert "more chars)" in text


def test_compact_fallback_counts_total_length_exactly():
    text = preview(_nested_list(5000), max_chars=10)
    assert text == "[" * 10 + "… (9992 more chars)"  # 5001 "[" and 5001 "]" in total


@given(msgpack_values, st.integers(min_value=0, max_value=300))
def test_preview_never_raises_and_respects_max_chars(value, max_chars):
    text = preview(loads(dumps(value)), max_chars=max_chars)
    head, _, note = text.partition("… (")
    assert len(head) <= max_chars or not note


# ---------------------------------------------------------------------- decode_preview


def test_decode_preview_ok():
    assert decode_preview(dumps({"a": 1})) == ('{\n  "a": 1\n}', None)


def test_decode_preview_corrupt_shows_hex_and_error():
    text, error = decode_preview(b"\x92\x01")
    assert text == "92 01"
    assert error is not None and "truncated" in error


def test_decode_preview_long_corrupt_payload_is_truncated_hex():
    text, error = decode_preview(b"\xc1" * 10_000, max_chars=20)
    assert text.startswith("c1 c1 c1")
    assert text.endswith("more chars)")
    assert error is not None


def test_decode_preview_none_and_text():
    assert decode_preview(None) == ("<no data>", None)
    text, error = decode_preview("oops")  # type: ignore[arg-type]
    assert text == "6f 6f 70 73"
    assert error is not None


# --------------------------------------------------------------------------- upstream


@pytest.mark.skipif(not UPSTREAM_ETL_BLOBS.is_dir(), reason="upstream fixture not available")
def test_upstream_blobs_decode_to_dicts_with_rows():
    paths = sorted(UPSTREAM_ETL_BLOBS.glob("*.bin"))
    assert len(paths) == 6
    for path in paths:
        value = loads(path.read_bytes())
        assert isinstance(value, dict)
        assert "rows" in value
        text, error = decode_preview(path.read_bytes())
        assert error is None
        assert text.startswith('{\n  "rows": [')
