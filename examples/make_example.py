"""Write a small example workspace with the beautyspot library.

    python examples/make_example.py [DIR]      (default: .beautyspot-demo)

Three caches the way an application fills them: an LLM cache with inline results
(some already expired), an ETL cache whose results are blob files (some written
45 days ago), and one orphan blob file left by a crash two hours ago.  Running it
again starts from scratch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import sys
from pathlib import Path

from beautyspot import serializer
from beautyspot.db import SQLiteTaskDB
from beautyspot.storage import LocalStorage

UTC = dt.timezone.utc


def key_of(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


class Clock:
    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def main(root: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    now = dt.datetime.now(UTC)
    clock = Clock(now)

    llm = SQLiteTaskDB(root / "llm.db", clock=clock)
    for i in range(12):
        prompt = f"question {i}?"
        answer = {"prompt": prompt, "answer": prompt[::-1], "tokens": 10 + i}
        # Four answers had a one-hour retention and were written yesterday: expired.
        expired = i % 3 == 0
        clock.now = now - dt.timedelta(days=1) if expired else now
        llm.save(
            key_of("ask", prompt),
            "ask",
            "app.llm.ask",
            key_of(prompt),
            "v1",
            "DIRECT_BLOB",
            "application/msgpack",
            result_data=serializer.dumps(answer),
            expires_at=clock.now + dt.timedelta(hours=1 if expired else 24 * 30),
        )
    llm.shutdown()

    etl = SQLiteTaskDB(root / "etl.db", clock=clock)
    blobs = LocalStorage(root / "blobs" / "etl")
    for chunk in range(8):
        key = key_of("load_chunk", chunk)
        payload = {"rows": [[chunk, j, f"name-{j}"] for j in range(200)]}
        location = blobs.save(key, serializer.dumps(payload))
        # Half the chunks were loaded 45 days ago: `prune --older-than 30d` takes them.
        clock.now = now - dt.timedelta(days=45) if chunk % 2 else now
        etl.save(
            key,
            "load_chunk",
            "app.etl.load_chunk",
            key_of(chunk),
            "2024-01",
            "FILE",
            "application/msgpack",
            result_value=location,
        )
    etl.shutdown()

    # A blob whose row was never committed (the writer crashed): an orphan once the
    # one-hour grace period has passed.
    orphan = blobs.resolve(blobs.save(key_of("crashed"), serializer.dumps({"rows": []})))
    two_hours_ago = (now - dt.timedelta(hours=2)).timestamp()
    os.utime(orphan, (two_hours_ago, two_hours_ago))
    print(f"wrote example workspace {root}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".beautyspot-demo"))
