"""Thread wakeup round trip on this machine: what every blocking ``save`` pays.

    python bench/bench_wakeup.py [--rounds N]
    taskset -c 0 python bench/bench_wakeup.py     # both threads on one CPU

Two threads hand a bare lock back and forth N times (default 20,000); the mean round
trip is printed.  ``SQLiteTaskDB.save`` blocks until its row has committed, so every
save costs at least one wakeup of its caller by the writer thread (and one of the
writer by a caller when the queue ran dry): with callers and writer on different CPUs
that wakeup is what separates the library from ``bench_db.py``'s no-thread ceiling.
"""

from __future__ import annotations

import _thread
import argparse
import sys
import threading
import time


def round_trip_us(rounds: int) -> float:
    ping, pong = _thread.allocate_lock(), _thread.allocate_lock()
    ping.acquire()
    pong.acquire()

    def other() -> None:
        for _ in range(rounds):
            ping.acquire()
            pong.release()

    thread = threading.Thread(target=other)
    thread.start()
    start = time.perf_counter()
    for _ in range(rounds):
        ping.release()
        pong.acquire()
    elapsed = time.perf_counter() - start
    thread.join()
    return elapsed / rounds * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20_000)
    args = ap.parse_args(argv)
    print(f"lock round trip between two threads: {round_trip_us(max(args.rounds, 1)):.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
