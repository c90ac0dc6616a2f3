"""MessagePack decoding and a safe, readable preview of cached results.

Upstream beautyspot stores results as MessagePack (``use_bin_type=True``) and encodes custom
types as ExtType payloads whose decoders live in the user's program, not here.  This module
therefore decodes what it can, turns every unknown extension into an :class:`ExtPlaceholder`
(shown as ``<ext code=N, M bytes>``), and reports anything that is not MessagePack as a
:class:`~beautyspot.errors.DecodeError` with a one-line message.  :func:`preview` never
raises, whatever :func:`loads` returned, so ``beautyspot show`` cannot crash on a payload.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import msgpack

from beautyspot.errors import DecodeError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms for show)
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PREVIEW_CHARS = 2000
# Bytes nested inside a structure are abbreviated to this many bytes of hex.
_NESTED_BYTES_SHOWN = 32
_BYTES_LIKE = (bytes, bytearray, memoryview)


class ExtPlaceholder:
    """Stand-in for a MessagePack ExtType we have no decoder for (only code and size kept).

    A plain class, not a dataclass (importing dataclasses costs ``show`` ~9 ms), and not
    a tuple (the preview must not print it as a list).  Immutable, compared by value.
    """

    __slots__ = ("code", "size")

    def __init__(self, code: int, size: int):
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "size", size)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ExtPlaceholder is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ExtPlaceholder is immutable (cannot delete {name!r})")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not ExtPlaceholder:
            return NotImplemented
        return (self.code, self.size) == (other.code, other.size)

    def __hash__(self) -> int:
        return hash((ExtPlaceholder, self.code, self.size))

    def __str__(self) -> str:
        return f"<ext code={self.code}, {self.size} bytes>"

    __repr__ = __str__


def _ext_hook(code: int, data: bytes) -> ExtPlaceholder:
    return ExtPlaceholder(code, len(data))


def dumps(obj: Any) -> bytes:
    """Serialize ``obj`` like upstream does (``use_bin_type=True``); TypeError if unsupported."""
    return msgpack.packb(obj, use_bin_type=True)


def _hashable(key: Any) -> Any:
    """A hashable stand-in for a map key that is itself an array or a map."""
    try:
        hash(key)
    except TypeError:
        if isinstance(key, dict):
            return tuple((_hashable(k), _hashable(v)) for k, v in key.items())
        if isinstance(key, Iterable):
            return tuple(_hashable(item) for item in key)
        return repr(key)
    return key


def _pairs_to_dict(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    return {_hashable(key): value for key, value in pairs}


def _unpack(data: bytes | bytearray | memoryview, *, tolerate_unhashable: bool) -> Any:
    return msgpack.unpackb(
        data,
        raw=False,
        strict_map_key=False,
        ext_hook=_ext_hook,
        # See loads(): decodes invalid UTF-8 instead of failing, without raw=True.
        unicode_errors="backslashreplace",
        object_pairs_hook=_pairs_to_dict if tolerate_unhashable else None,
    )


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(exc: BaseException) -> str:
    """A one-line reason; several msgpack exceptions carry no message at all."""
    if isinstance(exc, msgpack.ExtraData):
        return f"not valid MessagePack: {len(exc.extra)} bytes of trailing data after the value"
    if isinstance(exc, msgpack.StackError):
        return "not valid MessagePack: nesting too deep"
    if isinstance(exc, msgpack.FormatError):
        return "not valid MessagePack: invalid format byte"
    detail = str(exc)
    if isinstance(exc, msgpack.OutOfData) or "incomplete input" in detail:
        return "not valid MessagePack: truncated data (incomplete input)"
    if not detail:
        detail = type(exc).__name__
    return f"not valid MessagePack: {_one_line(detail)}"


def loads(data: bytes | bytearray | memoryview) -> Any:
    """Decode one MessagePack value, the whole of ``data``; DecodeError otherwise.

    Decoding choices, all so that a real-world payload still shows something useful:

    * unknown ExtTypes become :class:`ExtPlaceholder`; the timestamp extension (code -1)
      is decoded by msgpack into :class:`msgpack.Timestamp`;
    * a ``str`` holding invalid UTF-8 is decoded with ``errors="backslashreplace"``
      (``b"\\xff"`` reads as ``"\\\\xff"``) rather than refused.  We do not retry with
      ``raw=True``: that would turn *every* string into bytes and make real ``bin``
      values indistinguishable from text;
    * map keys may be any type (``strict_map_key=False``); a key that is an array or a
      map, legal in MessagePack but unhashable in Python, becomes a tuple;
    * truncated data, trailing bytes, bad format bytes and nesting deeper than msgpack's
      stack limit raise :class:`DecodeError` with a one-line message.
    """
    if not isinstance(data, _BYTES_LIKE):
        raise DecodeError(f"not valid MessagePack: expected bytes, got {type(data).__name__}")
    try:
        try:
            return _unpack(data, tolerate_unhashable=False)
        except TypeError:
            # Almost always an unhashable key; the slower pairs hook handles it.
            return _unpack(data, tolerate_unhashable=True)
    except Exception as exc:  # a decode boundary: nothing may escape but DecodeError
        raise DecodeError(_describe(exc)) from exc


# --------------------------------------------------------------------------- preview


def _truncate(text: str, max_chars: int, total: int | None = None) -> str:
    """Cut ``text`` to ``max_chars``; ``total`` is the full length when only a prefix is known."""
    total = len(text) if total is None else total
    if total <= max_chars:
        return text
    return f"{text[:max_chars]}… ({total - max_chars} more chars)"


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:  # a huge int, a recursion, a broken __repr__...
        return f"<{type(value).__name__}>"


def _timestamp_text(value: msgpack.Timestamp) -> str:
    try:
        return value.to_datetime().isoformat()
    except (OverflowError, ValueError, OSError):
        return _safe_repr(value)


def _bytes_preview(data: bytes | bytearray | memoryview, max_chars: int) -> str:
    """Space-separated hex; only the bytes that can be shown are converted."""
    if not len(data):
        return "<0 bytes>"
    total = len(data) * 3 - 1  # "00 01 02": two hex digits per byte plus separators
    shown = bytes(data[: max_chars // 3 + 1]).hex(" ")
    return _truncate(shown, max_chars, total)


def _nested_bytes_text(data: bytes | bytearray | memoryview) -> str:
    shown = bytes(data[:_NESTED_BYTES_SHOWN]).hex(" ")
    more = "…" if len(data) > _NESTED_BYTES_SHOWN else ""
    return f"<{len(data)} bytes: {shown}{more}>" if len(data) else "<0 bytes>"


def _inline_text(value: Any) -> str:
    """Text of a value that JSON cannot carry as is (used for keys and by ``default=``)."""
    if isinstance(value, ExtPlaceholder):
        return str(value)
    if isinstance(value, _BYTES_LIKE):
        return _nested_bytes_text(value)
    if isinstance(value, msgpack.Timestamp):
        return _timestamp_text(value)
    return _str(value)


def _key_text(key: Any) -> str:
    """Keys are converted with ``str()`` (so ``b"k"`` reads ``b'k'``, ``None`` reads ``None``).

    Keys that collide after conversion (``1`` and ``"1"``): the last one wins in the preview.
    """
    if isinstance(key, str):
        return key
    if isinstance(key, msgpack.Timestamp):
        return _timestamp_text(key)
    return _str(key)  # ExtPlaceholder's str() is already "<ext code=N, M bytes>"


def _str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _jsonable(value: Any) -> Any:
    """Copy containers so every key is a string; leaves are handled by ``default=``."""
    if isinstance(value, dict):
        return {_key_text(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(item) for item in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return list(value)
    return _inline_text(value)


def _scalar_text(value: Any) -> str:
    """JSON text for a leaf, never raising."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, (bool, int, float)):
        try:
            return json.dumps(value)
        except ValueError:  # int beyond Python's int-to-str digit limit
            return f"<{type(value).__name__}>"
    return json.dumps(_inline_text(value), ensure_ascii=False)


class _Raw:
    """Literal text in the compact renderer's work stack (distinct from str values)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _compact_preview(value: Any, max_chars: int) -> str:
    """Compact JSON-like text built with an explicit stack: no recursion, any depth.

    Only the first ``max_chars + 1`` characters are kept, but the total length is counted
    so the truncation note stays exact.
    """
    kept: list[str] = []
    kept_length = 0
    total = 0
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            text = item.text
        elif isinstance(item, dict):
            tokens: list[Any] = [_Raw("{")]
            for index, (key, child) in enumerate(item.items()):
                prefix = ", " if index else ""
                tokens.append(_Raw(f"{prefix}{json.dumps(_key_text(key), ensure_ascii=False)}: "))
                tokens.append(child)
            tokens.append(_Raw("}"))
            stack.extend(reversed(tokens))
            continue
        elif isinstance(item, (list, tuple, set, frozenset)):
            tokens = [_Raw("[")]
            for index, child in enumerate(item):
                if index:
                    tokens.append(_Raw(", "))
                tokens.append(child)
            tokens.append(_Raw("]"))
            stack.extend(reversed(tokens))
            continue
        else:
            text = _scalar_text(item)
        total += len(text)
        if kept_length <= max_chars:
            kept.append(text)
            kept_length += len(text)
    return _truncate("".join(kept), max_chars, total)


def _render(value: Any, max_chars: int) -> str:
    if isinstance(value, ExtPlaceholder):
        return _truncate(str(value), max_chars)
    if isinstance(value, str):
        return _truncate(value, max_chars)
    if isinstance(value, _BYTES_LIKE):
        return _bytes_preview(value, max_chars)
    if isinstance(value, msgpack.Timestamp):
        return _truncate(_timestamp_text(value), max_chars)
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        text = json.dumps(_jsonable(value), ensure_ascii=False, indent=2, default=_json_default)
        return _truncate(text, max_chars)
    return _truncate(_scalar_text(value), max_chars)


def preview(value: Any, max_chars: int = DEFAULT_PREVIEW_CHARS) -> str:
    """Readable text for a decoded value, at most ``max_chars`` plus a truncation note.

    dicts and lists are pretty JSON (non-string keys converted with ``str()``, bytes as
    abbreviated hex, ExtTypes as ``<ext code=N, M bytes>``); a str is shown as plain text,
    bytes as space-separated hex, scalars as JSON (``null``, ``true``, ``1.5``).  Longer
    text ends with ``… (N more chars)``.  Structures too deep for ``json`` (RecursionError)
    fall back to a compact one-line rendering built without recursion.  Never raises.
    """
    max_chars = max(int(max_chars), 0)
    try:
        return _render(value, max_chars)
    except Exception:  # RecursionError above all; preview must never fail
        try:
            return _compact_preview(value, max_chars)
        except Exception:
            return _truncate(_safe_repr(value), max_chars)


def decode_preview(
    data: bytes | bytearray | memoryview | None, max_chars: int = DEFAULT_PREVIEW_CHARS
) -> tuple[str, str | None]:
    """Decode and preview a payload: ``(text, None)``, or ``(hex of the bytes, error)``.

    ``None`` (no payload at all) gives ``("<no data>", None)``.  A payload that is not
    MessagePack is shown as hex so the user can still see what is there.
    """
    if data is None:
        return "<no data>", None
    try:
        value = loads(data)
    except DecodeError as exc:
        if isinstance(data, _BYTES_LIKE):
            raw = data
        else:  # e.g. a TEXT value where a BLOB was expected
            raw = str(data).encode("utf-8", "backslashreplace")
        return preview(raw, max_chars), str(exc)
    return preview(value, max_chars), None
