"""Benchmark the beautyspot CLI and library at scale, against raw-tool baselines.

    python bench/run.py [--sizes 100000 1000000] [--repeat 3] [--out BENCHMARKS.md]
                        [--workdir DIR] [--keep] [--indexes] [--no-writer-latency]

For each size, ``bench/make_workspace.py`` writes an upstream-format workspace (no
indexes, like upstream 2.7.7, unless ``--indexes``).  Every command then runs as a
child process, ``--repeat`` times (median reported), interleaved with its
**baseline**: a ``python -c`` child doing the minimal raw work for the same result
(the equivalent plain ``sqlite3`` query, ``os.scandir`` of the blob dir plus a set
difference, ``python -c pass`` for startup).  Destructive commands run on a fresh
copy of the workspace every time (DB file copied, blob files hard-linked, then
``os.sync()``; copy time not counted), and so do their baselines; the rows and blob
files left afterwards are compared, so a baseline that did less work than the command
is caught.  The sync puts the copy on disk, as a real workspace is: without it the
kernel was still writing the copy back while the child ran, and removing a directory
entry not yet on disk costs a tenth of removing one that is (14 vs 164 µs here), so
the side that reached its unlinks sooner (the baseline) got them cheap.

Peak RSS is the child's own ``ru_maxrss`` from ``os.wait4``.  Library writes are
``bench/bench_db.py``'s measurement (8 threads through ``SQLiteTaskDB.save`` vs one
raw ``executemany`` transaction), each side in its own child.  Item 5 of the issue
(a concurrent writer's worst ``save`` latency during ``prune --yes``) runs at the
largest size.  The CLI runs with ``BEAUTYSPOT_NOW`` = the workspace's ``--now``.

Results go to stdout as they come and, at the end, to ``--out`` as Markdown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
NOW = "2026-12-10T00:00:00Z"
NOW_DT = dt.datetime(2026, 12, 10, tzinfo=dt.timezone.utc)
DB_NAME = "bench"
GRACE_S = 3600  # gc's default --grace 1h

READ_RATIO, WRITE_RATIO, RSS_MB, SCALE_MAX, FLAT_MAX, WRITE_PCT = 3.0, 4.0, 120.0, 12.0, 2.0, 25.0


def ts(moment: dt.datetime) -> str:
    return moment.isoformat(sep=" ")


NOW_TS = ts(NOW_DT)
CUTOFF_TS = ts(NOW_DT - dt.timedelta(days=30))
GRACE_NS = int((NOW_DT.timestamp() - GRACE_S) * 1e9)

# --------------------------------------------------------------------------- baselines
# Each is run as `python -c CODE DB BLOBDIR ARG`; they print a short result so the work
# cannot be optimized away.  Timestamps in the generated DB all have upstream's single
# format, so plain string comparison is exact here (the library cannot assume that).

_ARGS = "import sqlite3,os,sys;db,bd,arg=sys.argv[1:4];"
_OPEN_RO = _ARGS + "c=sqlite3.connect('file:'+db+'?mode=ro',uri=True);"
_OPEN_RW = _ARGS + "c=sqlite3.connect(db,isolation_level=None);"

BASELINES = {
    "pass": "pass",
    # ls: the workspace line (count, expired, oldest/newest) in one scan + blob dir sizes.
    "ls": _OPEN_RO
    + "print(c.execute('SELECT count(*),sum(expires_at<?),min(updated_at),max(updated_at)"
    " FROM tasks',(arg,)).fetchone());n=b=0\n"
    "for e in os.scandir(bd):\n"
    " if e.name.endswith('.bin'):n+=1;b+=e.stat(follow_symlinks=False).st_size\n"
    "print(n,b)",
    # ls DB --limit 20: the newest 20 rows.
    "ls_limit": _OPEN_RO
    + "print(len(c.execute('SELECT rowid,cache_key,func_name,func_identifier,result_type,"
    "result_value,length(result_data),expires_at,updated_at,version FROM tasks"
    " ORDER BY updated_at DESC LIMIT 20').fetchall()))",
    # show PREFIX: prefix range on the primary key, then the row's blob file.
    "show": _OPEN_RO
    + "r=c.execute('SELECT cache_key,result_value,result_data FROM tasks WHERE cache_key>=?"
    " AND cache_key<? LIMIT 2',(arg,arg+'\\uffff')).fetchall();k,v,d=r[0]\n"
    "d=open(os.path.join(bd,v),'rb').read() if v else d;print(k,len(d))",
    # TAB completion of a key prefix: up to 51 keys of the range.
    "complete": _OPEN_RO
    + "print(len(c.execute('SELECT cache_key FROM tasks WHERE cache_key>=? AND cache_key<?"
    " ORDER BY cache_key LIMIT 51',(arg,arg+'\\uffff')).fetchall()))",
    # prune --dry-run: per-function counts/bytes, plus the matched blob files' sizes.
    "prune_dry": _OPEN_RO
    + "g=c.execute('SELECT func_identifier,count(*),total(length(result_data)),min(updated_at)"
    " FROM tasks WHERE updated_at<? GROUP BY 1',(arg,)).fetchall()\n"
    "fs=[os.lstat(os.path.join(bd,v)).st_size for (v,) in c.execute('SELECT result_value"
    " FROM tasks WHERE updated_at<? AND result_value IS NOT NULL',(arg,))]\n"
    "print(sum(x[1] for x in g),len(fs),sum(fs))",
    # gc --dry-run: expired rows per function, their blobs, and orphans = scandir - refs.
    "gc_dry": _OPEN_RO + "g=c.execute('SELECT func_identifier,count(*),total(length(result_data))"
    " FROM tasks WHERE expires_at<? GROUP BY 1',(arg,)).fetchall()\n"
    "fs=[os.lstat(os.path.join(bd,v)).st_size for (v,) in c.execute('SELECT result_value"
    " FROM tasks WHERE expires_at<? AND result_value IS NOT NULL',(arg,))]\n"
    "refs={v for (v,) in c.execute('SELECT result_value FROM tasks"
    " WHERE result_value IS NOT NULL')}\n"
    f"o=[e for e in os.scandir(bd) if e.name.endswith('.bin') and e.name not in refs"
    f" and e.stat(follow_symlinks=False).st_mtime_ns<{GRACE_NS}]\n"
    "print(sum(x[1] for x in g),len(fs),len(o))",
    # prune --yes: one DELETE, then unlink the blobs of the deleted rows.
    "prune": _OPEN_RW
    + "c.execute('BEGIN IMMEDIATE');fs=[v for (v,) in c.execute('SELECT result_value FROM tasks"
    " WHERE updated_at<? AND result_value IS NOT NULL',(arg,))]\n"
    "n=c.execute('DELETE FROM tasks WHERE updated_at<?',(arg,)).rowcount;c.execute('COMMIT')\n"
    "for v in fs:os.unlink(os.path.join(bd,v))\n"
    "print(n,len(fs))",
    # gc: delete expired rows and their blobs, then orphans past the grace period.
    "gc": _OPEN_RW
    + "c.execute('BEGIN IMMEDIATE');fs=[v for (v,) in c.execute('SELECT result_value FROM tasks"
    " WHERE expires_at<? AND result_value IS NOT NULL',(arg,))]\n"
    "n=c.execute('DELETE FROM tasks WHERE expires_at<?',(arg,)).rowcount;c.execute('COMMIT')\n"
    "for v in fs:os.unlink(os.path.join(bd,v))\n"
    "refs={v for (v,) in c.execute('SELECT result_value FROM tasks"
    " WHERE result_value IS NOT NULL')}\n"
    f"o=[e.path for e in os.scandir(bd) if e.name.endswith('.bin') and e.name not in refs"
    f" and e.stat(follow_symlinks=False).st_mtime_ns<{GRACE_NS}]\n"
    "for p in o:os.unlink(p)\n"
    "print(n,len(fs),len(o))",
    # clear --yes: delete every row (SQLite's truncate path) and every referenced blob.
    "clear": _OPEN_RW
    + "c.execute('BEGIN IMMEDIATE');fs=[v for (v,) in c.execute('SELECT result_value FROM tasks"
    " WHERE result_value IS NOT NULL')]\n"
    "c.execute('DELETE FROM tasks');c.execute('COMMIT')\n"
    "for v in fs:os.unlink(os.path.join(bd,v))\n"
    "print(len(fs))",
}


@dataclass
class Spec:
    name: str  # as shown in the table
    argv: list[str]  # CLI arguments after `beautyspot -w WS`
    baseline: str  # key of BASELINES
    base_arg: str  # third argument of the baseline
    kind: str  # "startup", "read" or "write"
    env: dict | None = None  # extra environment (completion requests)
    label: str | None = None  # table label when argv does not say it


@dataclass
class Measure:
    times: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")

    @property
    def rss_mb(self) -> float:
        return max(self.rss_kb) / 1024 if self.rss_kb else float("nan")


@dataclass
class Row:
    spec: Spec
    lib: Measure
    base: Measure
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.lib.median / self.base.median if self.base.median else float("nan")


# --------------------------------------------------------------------------- running


def cli_cmd() -> list[str]:
    exe = Path(PY).parent / "beautyspot"
    return [str(exe)] if exe.exists() else [PY, "-m", "beautyspot"]


def child_env() -> dict[str, str]:
    env = dict(os.environ, BEAUTYSPOT_NOW=NOW)
    # As installed: bytecode cached (the warm-up runs write it; __pycache__ is gitignored).
    # Without the cache every run would recompile beautyspot's own modules (~60 ms).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("BEAUTYSPOT_WORKSPACE", None)
    env["COLUMNS"] = "160"
    return env


def run_child(argv: list[str], log: Path, env=None, cwd=None) -> tuple[float, int, int]:
    """Run *argv*; return (seconds, peak RSS in kB, exit code). Output goes to *log*."""
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env or child_env(),
            cwd=cwd or log.parent,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, int(usage.ru_maxrss), proc.returncode


def tail(path: Path, n: int = 400) -> str:
    text = path.read_text(errors="replace")
    return " ".join(text[-n:].split())


def fresh_copy(src: Path, dst: Path) -> None:
    """The workspace at *dst*: DB files copied, blob files hard-linked (cheap, and
    unlinking a link costs what unlinking the file does)."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for entry in os.scandir(src):
        if entry.is_file():
            shutil.copyfile(entry.path, dst / entry.name)
    subprocess.run(["cp", "-al", str(src / "blobs"), str(dst / "blobs")], check=True)
    os.sync()  # on disk before the timed run: see the module docstring


def state_of(ws: Path) -> tuple[int, int]:
    """(rows, blob files) of a workspace, to check a command against its baseline."""
    conn = sqlite3.connect(f"file:{ws / (DB_NAME + '.db')}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    finally:
        conn.close()
    blobs = sum(1 for e in os.scandir(ws / "blobs" / DB_NAME) if e.name.endswith(".bin"))
    return rows, blobs


def measure(spec: Spec, ws: Path, work: Path, repeat: int) -> Row:
    lib, base = Measure(), Measure()
    log = work / "out.log"
    write = spec.kind == "write"
    copy = work / "copy"
    states: dict[str, set] = {"lib": set(), "base": set()}
    for _ in range(repeat):
        for side, m in (("lib", lib), ("base", base)):
            target = copy if write else ws
            if write:
                fresh_copy(ws, copy)
            env = None
            if side == "lib" and spec.env is not None:
                argv = cli_cmd()
                env = dict(
                    child_env(), **{k: v.replace("{ws}", str(target)) for k, v in spec.env.items()}
                )
            elif side == "lib":
                argv = [*cli_cmd(), "-w", str(target), *spec.argv]
            else:
                code = BASELINES[spec.baseline]
                blob_dir = target / "blobs" / DB_NAME
                argv = [PY, "-c", code, str(target / f"{DB_NAME}.db"), str(blob_dir), spec.base_arg]
            secs, rss, rc = run_child(argv, log, env=env)
            if rc != 0:
                m.errors.append(f"exit {rc}: {tail(log)}")
            if spec.env is not None and side == "lib":
                row_out = log.read_text(errors="replace").split()
                m.errors += [] if row_out else ["no completion candidates"]
            m.times.append(secs)
            m.rss_kb.append(rss)
            if write:
                states[side].add(state_of(copy))
    row = Row(spec, lib, base)
    if write and states["lib"] != states["base"]:
        row.note = f"MISMATCH rows/blobs left: lib {states['lib']} vs baseline {states['base']}"
    elif write:
        ((rows, blobs),) = states["lib"]
        row.note = f"left {rows} rows, {blobs} blobs (= baseline)"
    if copy.exists():
        shutil.rmtree(copy)
    return row


LIB_WRITES = """
import json, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import bench_db
parts = bench_db.make_rows(8, 2000)
with tempfile.TemporaryDirectory(prefix='bs-bench-') as tmp:
    rate = getattr(bench_db, sys.argv[2])(parts, Path(tmp))
print(json.dumps({'rate': rate}))
"""


def measure_writes(work: Path, repeat: int) -> Row:
    """bench_db.py's measurement, each side in its own child (for its RSS)."""
    spec = Spec("library writes, 8 threads (rows/s)", [], "raw executemany", "", "writes")
    lib, base = Measure(), Measure()
    rates: dict[str, list[float]] = {"lib": [], "base": [], "loop": []}
    log = work / "writes.log"
    for _ in range(repeat):
        for side, fn, m in (
            ("lib", "bench_library", lib),
            ("base", "bench_raw", base),
            ("loop", "bench_commit_loop", Measure()),  # information: the ceiling
        ):
            secs, rss, rc = run_child([PY, "-c", LIB_WRITES, str(HERE), fn], log)
            if rc != 0:
                m.errors.append(f"exit {rc}: {tail(log)}")
                continue
            rate = json.loads(log.read_text().strip().splitlines()[-1])["rate"]
            rates[side].append(rate)
            m.times.append(16000 / rate)  # seconds for the 16,000 rows
            m.rss_kb.append(rss)
    row = Row(spec, lib, base)
    if rates["lib"] and rates["base"]:
        pct = 100 * statistics.median(rates["lib"]) / statistics.median(rates["base"])
        row.note = (
            f"{statistics.median(rates['lib']):,.0f} vs {statistics.median(rates['base']):,.0f}"
            f" rows/s = {pct:.1f} % of raw"
        )
    if rates["loop"] and rates["base"]:
        loop = statistics.median(rates["loop"])
        row.note += (
            f"; ceiling (8 rows per commit, no threads; bench_db.py):"
            f" {100 * loop / statistics.median(rates['base']):.1f} % of raw"
        )
    return row


# --------------------------------------------------------------------------- imports


IMPORT_PROBE = """
import sys, time
from beautyspot.cli.entry import main
sys.argv = ['beautyspot', *sys.argv[1:]]
t = time.perf_counter()
try:
    main()
except SystemExit:
    pass
heavy = sorted(m for m in ('pandas', 'numpy', 'rich', 'typer', 'msgpack') if m in sys.modules)
print('HEAVY=' + ','.join(heavy), file=sys.stderr)
"""


def import_checks(small_ws: Path, work: Path) -> list[tuple[str, str, bool]]:
    """(what, modules imported, pandas-free?) for --help and ls on a small workspace."""
    out = []
    log = work / "imports.log"
    for label, args in (
        ("beautyspot --help", ["--help"]),
        ("beautyspot ls (small workspace)", ["-w", str(small_ws), "ls"]),
        ("beautyspot ls DB (small workspace)", ["-w", str(small_ws), "ls", DB_NAME]),
    ):
        _, _, rc = run_child([PY, "-c", IMPORT_PROBE, *args], log)
        heavy = ""
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("HEAVY="):
                heavy = line[6:]
        mods = heavy.split(",") if heavy else []
        out.append((label, heavy or "(none)", "pandas" not in mods and "numpy" not in mods))
    return out


def import_time(work: Path) -> list[tuple[str, float]]:
    """Top cumulative import times (ms) of `beautyspot --help`, from -X importtime."""
    log = work / "importtime.log"
    run_child([PY, "-X", "importtime", "-c", IMPORT_PROBE, "--help"], log)
    top: list[tuple[str, float]] = []
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = [p.strip() for p in line[len("import time:") :].split("|")]
        try:
            cumulative = int(parts[1])
        except ValueError:
            continue
        name = parts[2]
        if not name.startswith(" ") and "." not in name.strip():
            top.append((name.strip(), cumulative / 1000))
    top.sort(key=lambda t: -t[1])
    return top[:8]


# --------------------------------------------------------------------------- writer latency

WRITER = """
import json, os, sys, time, sqlite3
path, stop, mode = sys.argv[1:4]
lat = []
if mode == 'library':
    from beautyspot.db import SQLiteTaskDB
    db = SQLiteTaskDB(path, timeout=30.0)
    def save(i):
        db.save(f'w{i:063d}', 'writer', 'bench.writer', f'in{i}', None, 'DIRECT_BLOB', None,
                result_data=b'x' * 100)
else:  # upstream-style: a plain connection, one INSERT OR REPLACE + commit per save
    conn = sqlite3.connect(path, timeout=30.0)
    conn.execute('PRAGMA journal_mode=WAL')
    def save(i):
        conn.execute("INSERT OR REPLACE INTO tasks (cache_key, func_name, func_identifier,"
                     " input_id, result_type, result_data, updated_at) VALUES"
                     " (?, 'writer', 'bench.writer', ?, 'DIRECT_BLOB', ?, datetime('now'))",
                     (f'w{i:063d}', f'in{i}', b'x' * 100))
        conn.commit()
print('ready', flush=True)
i = errors = 0
while not os.path.exists(stop):
    t0 = time.time(); t = time.perf_counter()
    try:
        save(i)
    except Exception as exc:
        errors += 1
        print('ERROR', type(exc).__name__, exc, file=sys.stderr)
    lat.append((t0, time.perf_counter() - t))
    i += 1
    time.sleep(0.002)
if mode == 'library':
    db.shutdown()
print(json.dumps({'lat': lat, 'errors': errors}))
"""


def writer_latency(ws: Path, work: Path, mode: str) -> dict:
    """Worst save latency of a concurrent writer while `prune --older-than 30d --yes` runs."""
    copy = work / "copy"
    fresh_copy(ws, copy)
    stop = work / "stop-writer"
    stop.unlink(missing_ok=True)
    wlog = work / f"writer-{mode}.err"
    with open(wlog, "wb") as err:
        writer = subprocess.Popen(
            [PY, "-c", WRITER, str(copy / f"{DB_NAME}.db"), str(stop), mode],
            stdout=subprocess.PIPE,
            stderr=err,
            env=child_env(),
        )
        assert writer.stdout is not None
        ready_line = writer.stdout.readline()
        if b"ready" not in ready_line:
            writer.wait()
            return {"error": tail(wlog)}
        time.sleep(1.0)  # a few saves before
        t_start = time.time()
        secs, rss, rc = run_child(
            [*cli_cmd(), "-w", str(copy), "prune", "--older-than", "30d", "--yes"],
            work / "prune-writer.log",
        )
        t_end = time.time()
        time.sleep(0.5)
        stop.touch()
        data = json.loads(writer.stdout.read().decode().strip().splitlines()[-1])
        writer.wait()
    during = [d for t0, d in data["lat"] if t_start <= t0 <= t_end]
    during.sort()
    shutil.rmtree(copy)
    stop.unlink(missing_ok=True)
    return {
        "mode": mode,
        "prune_s": secs,
        "prune_rc": rc,
        "saves": len(during),
        "errors": data["errors"],
        "max_ms": 1000 * during[-1] if during else float("nan"),
        "p99_ms": 1000 * during[int(0.99 * (len(during) - 1))] if during else float("nan"),
        "p50_ms": 1000 * during[len(during) // 2] if during else float("nan"),
        "worst_all_ms": 1000 * max(d for _, d in data["lat"]),
    }


# --------------------------------------------------------------------------- report


def machine() -> list[str]:
    mem = "?"
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        rev = head + (" + uncommitted changes in src/" if dirty else "")
    except OSError:
        rev = "?"
    fs = subprocess.run(
        ["df", "-T", tempfile.gettempdir()], capture_output=True, text=True
    ).stdout.splitlines()[-1:]
    return [
        f"- CPU: {os.cpu_count()} cores (`nproc`), {cpu}",
        f"- memory: {mem}",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
        f"- work dir filesystem: `{' '.join(fs[0].split()[:2]) if fs else '?'}`",
        f"- code: {rev}",
    ]


def label(spec: Spec) -> str:
    if spec.label:
        return spec.label
    args = ["DB" if a.endswith(".db") else a for a in spec.argv]
    return " ".join(args) or spec.name


def fmt_s(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.2f}"


def verdict(ok: bool) -> str:
    return "pass" if ok else "**FAIL**"


NO_INDEX_NOTE = ", as upstream 2.7.7 writes them"


def report(args, results, manifests, gen_secs, imports, itimes, latency, total_s) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Produced by `bench/run.py` (see its docstring for the method). Command:",
        "",
        "```",
        "python " + " ".join(shlex.quote(a) for a in ["bench/run.py", *sys.argv[1:]]),
        "```",
        "",
        f"Run finished {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
        f" in {total_s / 60:.1f} min. Machine:",
        "",
        *machine(),
        "",
        "Workspaces: `bench/make_workspace.py ROWS` (seed 42, now = 2026-12-10T00:00:00Z,"
        f" {'with' if args.indexes else 'without'} indexes"
        f"{'' if args.indexes else NO_INDEX_NOTE}).",
        "Times are medians of"
        f" {args.repeat} runs, each a fresh child process; RSS is the child's peak"
        " (`ru_maxrss`, max over runs). Baselines are `python -c` children doing the"
        " minimal raw work (plain `sqlite3`, `os.scandir`); ratio = command / baseline."
        " beautyspot's bytecode is compiled before the first run, as a `pip install` does.",
        "Destructive commands and their baselines run on a fresh copy each time (not timed),"
        " flushed to disk with `os.sync()` before the run (a workspace in use is on disk;"
        " a copy still being written back made unlinks ~10x cheaper for whichever side"
        " reached them first); the rows and blob files they leave are checked equal.",
        "*net ratio* (information, not a target) subtracts each side's startup"
        " (`beautyspot --help` for the command, `python -c pass` for the baseline): the"
        " ratio of the work itself; `–` when the baseline's work is below 5 ms; blank for"
        " TAB completion, which answers without loading the Typer app.",
        "",
    ]
    for size in args.sizes:
        man = manifests[size]
        lines += [
            f"## {size:,} rows",
            "",
            f"{man['rows']:,} rows over {man['functions']} functions,"
            f" {man['file_rows']:,} FILE rows,"
            f" {man['expired']:,} expired, {man['old_40d']:,} updated 40+ days ago,"
            f" {man['orphans']:,} orphan blobs; DB {man['db_bytes'] / 1e6:.0f} MB,"
            f" {man['blob_files']:,} blob files. Generated in {gen_secs[size]:.1f} s.",
            "",
            "| command | time (s) | baseline (s) | ratio | target | net ratio"
            " | peak RSS (MB) | baseline RSS | result | notes |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        startup = next((r for r in results[size] if r.spec.baseline == "pass"), None)
        for row in results[size]:
            kind = row.spec.kind
            if kind == "writes":
                pct = 100 * row.base.median / row.lib.median if row.lib.median else 0
                ok = pct >= WRITE_PCT and row.lib.rss_mb <= RSS_MB
                target = f"≥ {WRITE_PCT:.0f} % of raw"
                ratio = f"{pct:.0f} %"
            else:
                limit = {"read": READ_RATIO, "write": WRITE_RATIO}.get(kind)
                ok = (limit is None or row.ratio <= limit) and row.lib.rss_mb <= RSS_MB
                target = f"≤ {limit:.0f}×" if limit else "(info)"
                ratio = f"{row.ratio:.1f}×"
            if row.lib.errors or row.base.errors:
                ok = False
            notes = row.note
            if row.lib.errors:
                notes += " lib error: " + row.lib.errors[0][:200]
            if row.base.errors:
                notes += " baseline error: " + row.base.errors[0][:200]
            base_name = f"`{row.spec.baseline}`"
            net = ""
            if startup is not None and kind in ("read", "write") and row.spec.env is None:
                work = row.lib.median - startup.lib.median
                raw = row.base.median - startup.base.median
                net = f"{work / raw:.1f}×" if raw > 0.005 else "–"
            lines.append(
                f"| `{label(row.spec)}` | {fmt_s(row.lib.median)} |"
                f" {fmt_s(row.base.median)} {base_name} | {ratio} | {target} | {net} |"
                f" {row.lib.rss_mb:.0f} | {row.base.rss_mb:.0f} | {verdict(ok)} | {notes} |"
            )
        lines.append("")
    if len(args.sizes) >= 2:
        small, big = args.sizes[0], args.sizes[-1]
        factor = big / small
        lines += [
            f"## Scaling {small:,} → {big:,} rows ({factor:.0f}× the rows)",
            "",
            f"Target: ≤ {SCALE_MAX:.0f}× (linear or better); `show` flat (≤ {FLAT_MAX:.0f}×).",
            "",
            "| command | time small (s) | time big (s) | growth | result |",
            "|---|---:|---:|---:|---|",
        ]
        for rs, rb in zip(results[small], results[big], strict=True):
            if rs.spec.kind == "writes":
                continue
            growth = rb.lib.median / rs.lib.median
            flat = rs.spec.baseline in ("show", "complete", "pass")
            ok = growth <= (FLAT_MAX if flat else SCALE_MAX)
            lines.append(
                f"| `{label(rs.spec)}` | {fmt_s(rs.lib.median)} | {fmt_s(rb.lib.median)} |"
                f" {growth:.1f}× | {verdict(ok)}{' (flat)' if flat else ''} |"
            )
        lines.append("")
    lines += [
        "## Imports",
        "",
        "| invocation | heavy modules imported | pandas-free |",
        "|---|---|---|",
    ]
    for what, heavy, ok in imports:
        lines.append(f"| `{what}` | {heavy} | {verdict(ok)} |")
    lines += [
        "",
        "Largest top-level imports of `beautyspot --help` (`-X importtime`, cumulative ms):",
    ]
    lines += ["", ", ".join(f"{n} {ms:.0f}" for n, ms in itimes), ""]
    if latency:
        big = args.sizes[-1]
        lines += [
            f"## Concurrent writer during `prune --older-than 30d --yes` ({big:,} rows)",
            "",
            "A second process saves a row every ~2 ms while prune deletes a third of the rows;"
            " latencies of the saves started during the prune. `library`:"
            " `SQLiteTaskDB.save` (its constructor has created the library's indexes)."
            " `upstream-style`: one `INSERT OR REPLACE` + commit per save on a plain"
            " connection, on the DB as upstream left it (no indexes). Target: worst save"
            " < the DB timeout (30 s default).",
            "",
            "| writer | prune (s) | saves during prune | errors | p50 (ms) | p99 (ms)"
            " | worst (ms) | result |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for lat in latency:
            if "error" in lat:
                lines.append(f"| {lat.get('mode', '?')} | error: {lat['error'][:200]} |||||||")
                continue
            ok = lat["max_ms"] < 30_000 and lat["errors"] == 0 and lat["prune_rc"] == 0
            lines.append(
                f"| {lat['mode']} | {lat['prune_s']:.1f} | {lat['saves']} | {lat['errors']} |"
                f" {lat['p50_ms']:.1f} | {lat['p99_ms']:.1f} | {lat['max_ms']:.0f} |"
                f" {verdict(ok)} |"
            )
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def specs(manifest: dict) -> list[Spec]:
    prefix = manifest["sample_file_key"][:12]
    return [
        Spec("--help", ["--help"], "pass", "", "startup"),
        Spec("ls", ["ls"], "ls", NOW_TS, "read"),
        Spec("ls --limit", ["ls", "--db", manifest["db"], "--limit", "20"], "ls_limit", "", "read"),
        Spec("show", ["show", prefix], "show", prefix, "read"),
        Spec(
            "complete",
            [],
            "complete",
            prefix[:4],
            "read",
            label=f"TAB: show {prefix[:4]}",
            env={
                "_BEAUTYSPOT_COMPLETE": "complete_bash",
                "COMP_CWORD": "4",
                "COMP_WORDS": f"beautyspot -w {{ws}} show {prefix[:4]}",
            },
        ),
        Spec(
            "prune dry",
            ["prune", "--older-than", "30d", "--dry-run"],
            "prune_dry",
            CUTOFF_TS,
            "read",
        ),
        Spec("gc dry", ["gc", "--dry-run"], "gc_dry", NOW_TS, "read"),
        Spec("prune", ["prune", "--older-than", "30d", "--yes"], "prune", CUTOFF_TS, "write"),
        Spec("gc", ["gc"], "gc", NOW_TS, "write"),
        Spec("clear", ["clear", "--yes"], "clear", "", "write"),
    ]


def generate(size: int, work: Path, indexes: bool) -> tuple[dict, float]:
    ws = work / f"ws-{size}"
    man_path = work / f"ws-{size}.json"
    if man_path.exists() and ws.exists():
        man = json.loads(man_path.read_text())
        if man.get("indexes") == indexes and man.get("rows") == size:
            print(f"reusing {ws}", flush=True)
            return man, float(man.get("seconds", 0))
    argv = [PY, str(HERE / "make_workspace.py"), str(size), "--out", str(ws), "--now", NOW]
    if indexes:
        argv.append("--indexes")
    start = time.perf_counter()
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    secs = time.perf_counter() - start
    man = json.loads(out)
    man_path.write_text(json.dumps(man))
    return man, secs


def compile_package() -> None:
    """Cache beautyspot's bytecode, as installing a wheel does: an editable install in a
    fresh clone has none, and compiling on every run would be measured as start-up."""
    code = (
        "import compileall, os, beautyspot;"
        "compileall.compile_dir(os.path.dirname(beautyspot.__file__), quiet=1)"
    )
    subprocess.run([PY, "-c", code], check=True)


def warm(ws: Path) -> None:
    """Read the DB once so every command starts with it in the page cache."""
    with open(ws / f"{DB_NAME}.db", "rb") as fh:
        while fh.read(1 << 24):
            pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    ap.add_argument("--keep", action="store_true", help="keep the workdir (reused next time)")
    ap.add_argument("--indexes", action="store_true", help="workspaces with the indexes")
    ap.add_argument("--only", nargs="*", default=None, help="only these commands (e.g. ls show)")
    ap.add_argument("--no-writer-latency", action="store_true")
    args = ap.parse_args(argv)
    args.sizes = sorted(args.sizes)
    t0 = time.perf_counter()
    compile_package()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="beautyspot-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results, manifests, gen_secs = {}, {}, {}
    try:
        for size in args.sizes:
            man, secs = generate(size, work, args.indexes)
            manifests[size], gen_secs[size] = man, secs
            print(f"== {size:,} rows (workspace generated in {secs:.1f} s)", flush=True)
            ws = Path(man["workspace"])
            warm(ws)
            rows = []
            for spec in specs(man):
                if args.only and spec.baseline not in args.only and spec.name not in args.only:
                    continue
                row = measure(spec, ws, work, args.repeat)
                rows.append(row)
                print(
                    f"  {label(spec):42s} {row.lib.median:8.3f} s  base"
                    f" {row.base.median:7.3f} s  {row.ratio:5.1f}x  rss {row.lib.rss_mb:5.0f} MB"
                    f"  {row.note} {row.lib.errors[:1]} {row.base.errors[:1]}",
                    flush=True,
                )
            if not args.only or "writes" in args.only:
                row = measure_writes(work, args.repeat)
                rows.append(row)
                print(f"  library writes: {row.note}  rss {row.lib.rss_mb:.0f} MB", flush=True)
            results[size] = rows
        small_man, _ = generate(200, work, False)
        imports = import_checks(Path(small_man["workspace"]), work)
        itimes = import_time(work)
        for what, heavy, ok in imports:
            print(f"  {what}: {heavy} {'ok' if ok else 'IMPORTS PANDAS'}", flush=True)
        latency = []
        if not args.no_writer_latency:
            big_ws = Path(manifests[args.sizes[-1]]["workspace"])
            modes = ["library"] if args.indexes else ["library", "upstream-style"]
            for mode in modes:
                lat = writer_latency(big_ws, work, mode)
                latency.append(lat)
                print(f"  writer during prune: {lat}", flush=True)
        total = time.perf_counter() - t0
        text = report(args, results, manifests, gen_secs, imports, itimes, latency, total)
        args.out.write_text(text + "\n")
        print(f"wrote {args.out} ({total / 60:.1f} min)")
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
