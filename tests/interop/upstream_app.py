"""An application of the *upstream* beautyspot 2.7.7 library, run by the interop tests.

It runs under another interpreter (Python >= 3.12, upstream installed from PyPI), never
under the project's own: ``beautyspot`` here is upstream's package.  Run it as a script
(``__main__``), from the directory that holds (or will hold) ``.beautyspot/``, so its
functions are always ``__main__.<name>`` as in the fixture.

    python upstream_app.py call       # call every function once; JSON report on stdout
    python upstream_app.py read DB KEY...   # upstream's own SQLiteTaskDB.get of each key

``call`` reports, per function, the inputs it had to compute (cache misses) and every
result, so a test can tell exactly which cached rows upstream still finds.  ``read``
reports upstream's view of single rows (decoded with its serializer and blob storage).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import beautyspot as bs

spot = bs.Spot(name="llm")
computed: dict[str, list[str]] = {}

ASK = [f"q{i}" for i in range(12)]
EMBED = [f"e{i}" for i in range(6)]
EPHEMERAL = [f"x{i}" for i in range(4)]
EPHEMERAL_FILES = [f"f{i}" for i in range(3)]


def _note(name: str, arg: str) -> None:
    computed.setdefault(name, []).append(arg)


@spot.mark(version="v1")
def ask(q: str) -> dict:
    _note("ask", q)
    return {"input": q, "answer": q.upper() * 3, "tokens": [len(q), 7, 9]}


@spot.mark(save_blob=True)
def embed(e: str) -> dict:
    _note("embed", e)
    return {"input": e, "vector": [float(i) / 7 for i in range(64)]}


@spot.mark(retention=1)
def ephemeral(x: str) -> dict:
    _note("ephemeral", x)
    return {"input": x, "value": x * 2}


@spot.mark(save_blob=True, retention=1)
def ephemeral_file(f: str) -> dict:
    _note("ephemeral_file", f)
    return {"input": f, "blob": "z" * 300}


def call_all() -> dict:
    results = {}
    with spot:
        for fn, args in (
            (ask, ASK),
            (embed, EMBED),
            (ephemeral, EPHEMERAL),
            (ephemeral_file, EPHEMERAL_FILES),
        ):
            results[fn.__name__] = {a: fn(a) for a in args}
    return {"computed": computed, "results": results}


def read(db_path: str, keys: list[str]) -> dict:
    db = bs.SQLiteTaskDB(db_path)
    storage = bs.LocalStorage(Path(db_path).parent / "blobs" / Path(db_path).stem)
    serializer = bs.MsgpackSerializer()
    out = {}
    try:
        for key in keys:
            rec = db.get(key)
            if rec is None:
                out[key] = None
                continue
            data = rec["result_data"]
            if rec["result_type"] == "FILE":
                data = storage.load(rec["result_value"])
            out[key] = {
                "result_type": rec["result_type"],
                "result_value": rec["result_value"],
                "value": serializer.loads(data),
            }
    finally:
        db.shutdown()
    return out


if __name__ == "__main__":
    if sys.argv[1] == "call":
        report = call_all()
    else:
        report = read(sys.argv[2], sys.argv[3:])
    json.dump(report, sys.stdout, default=list)  # bytes -> list of ints
