"""Shared tools of the reliability suite (``tests/reliability``).

Everything here observes the product from the outside: it builds workspaces with plain
``sqlite3`` (upstream's table, upstream's timestamp format), runs the installed
``beautyspot`` command in subprocesses, and inspects the DB and the file tree afterwards.
Nothing here calls the maintenance code under test.

Trial counts: ``BEAUTYSPOT_RELIABILITY_TRIALS`` (default: small, so the whole directory runs
in about a minute on two cores). With 20 or more, the kill -9 trials use 50 000-row
workspaces; ``BEAUTYSPOT_RELIABILITY_ROWS`` overrides the row count and
``BEAUTYSPOT_RELIABILITY_SEED`` the random seed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from beautyspot.sql import CREATE_TABLE

UTC = dt.timezone.utc
UPSTREAM = Path(__file__).resolve().parents[1] / "fixtures" / "upstream-2.7.7" / ".beautyspot"
BS = str(Path(sys.executable).parent / "beautyspot")

_TRIALS_ENV = os.environ.get("BEAUTYSPOT_RELIABILITY_TRIALS", "").strip()
FULL = bool(_TRIALS_ENV) and int(_TRIALS_ENV) >= 20
SEED = int(os.environ.get("BEAUTYSPOT_RELIABILITY_SEED", "20261203"))


def trials(default: int) -> int:
    """Trials of a scenario: the env var when set, else *default*."""
    return int(_TRIALS_ENV) if _TRIALS_ENV else default


def big_rows() -> int:
    """Rows of the kill -9 workspaces: 50k for the full run, 5k by default."""
    env = os.environ.get("BEAUTYSPOT_RELIABILITY_ROWS", "").strip()
    if env:
        return int(env)
    return 50_000 if FULL else 5_000


# The instant every CLI run of the suite takes as "now" (unless a test says otherwise).
NOW = dt.datetime(2026, 12, 10, 0, 0, tzinfo=UTC)
NOW_ENV = NOW.isoformat()


def ts(moment: dt.datetime) -> str:
    """Upstream's timestamp text: ``YYYY-MM-DD HH:MM:SS.ffffff+00:00``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")


def parse_ts(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


INSERT = (
    "INSERT INTO tasks (cache_key, func_name, func_identifier, input_id, version,"
    " result_type, content_type, result_value, result_data, expires_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
UPSTREAM_INDEXES = (
    "CREATE INDEX IF NOT EXISTS idx_func_identifier ON tasks(func_identifier)",
    "CREATE INDEX IF NOT EXISTS idx_expires_at ON tasks(expires_at)",
)


def create_db(path: Path, rows: list[tuple], *, wal: bool = True) -> None:
    """A task DB as upstream writes it, filled with *rows* (``INSERT`` column order)."""
    conn = sqlite3.connect(path)
    try:
        if wal:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(CREATE_TABLE)
        for sql in UPSTREAM_INDEXES:
            conn.execute(sql)
        conn.executemany(INSERT, rows)
        conn.commit()
        if wal:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def write_blob(path: Path, data: bytes, mtime: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def file_row(key, func, location, expires_at, updated_at, version=None):
    return (key, func.rsplit(".", 1)[-1], func, f"in-{key[:16]}", version, "FILE",
            "application/msgpack", location, None, expires_at, updated_at)  # fmt: skip


def inline_row(key, func, payload, expires_at, updated_at, version="v1"):
    return (key, func.rsplit(".", 1)[-1], func, f"in-{key[:16]}", version, "DIRECT_BLOB",
            "application/msgpack", None, payload, expires_at, updated_at)  # fmt: skip


# --------------------------------------------------------------------------- big workspace

OLD_MTIME = dt.datetime(2026, 1, 1, tzinfo=UTC).timestamp()
PRUNE_CUTOFF = "2026-06-15"
CLEAR_FUNC = "mod.f1"
FUNCS = ("mod.f0", "mod.f1", "mod.f2", "mod.f3")


@dataclass
class BigSpec:
    """What a big workspace holds, for computing expected outcomes independently."""

    root: Path
    rows: dict[str, dict[str, tuple]] = field(default_factory=dict)  # db -> key -> row
    orphans: dict[str, list[str]] = field(default_factory=dict)  # db -> blob locations
    temps: dict[str, list[str]] = field(default_factory=dict)


def build_big_workspace(root: Path, n_rows: int, *, wal: bool = True) -> BigSpec:
    """``big.db`` (*n_rows*) and ``side.db`` (2%): a fifth FILE rows, a third expired.

    Row *i*: function ``mod.f{i%4}``; updated_at spread over 2026-01-01..2026-11-26;
    expires_at NULL (i%3==0), 2026-06-01 plus i*10 s (i%3==1: expired at NOW), or
    2027-06-01 (live). Every FILE row has its blob. Blob dirs also hold old orphans and
    stale temp files. All blob mtimes are 2026-01-01 (long past any grace).
    """
    spec = BigSpec(root)
    root.mkdir(parents=True)
    (root / ".gitignore").write_text("*\n")
    base = dt.datetime(2026, 1, 1, tzinfo=UTC)
    for name, n in (("big", n_rows), ("side", max(50, n_rows // 50))):
        blob_dir = root / "blobs" / name
        blob_dir.mkdir(parents=True)
        (blob_dir / ".gitignore").write_text("*\n")
        step = 330 * 86400 // n
        rows = []
        for i in range(n):
            key = hashlib.sha256(f"{name}-{i}".encode()).hexdigest()
            func = FUNCS[i % 4]
            upd = ts(base + dt.timedelta(seconds=i * step, microseconds=(i * 7919) % 999_999 + 1))
            if i % 3 == 0:
                exp = None
            elif i % 3 == 1:
                exp = ts(dt.datetime(2026, 6, 1, tzinfo=UTC) + dt.timedelta(seconds=i * 10))
            else:
                exp = ts(dt.datetime(2027, 6, 1, tzinfo=UTC))
            if i % 5 == 0:
                loc = key + ".bin"
                rows.append(file_row(key, func, loc, exp, upd))
                write_blob(blob_dir / loc, msgpack.packb({"i": i, "pad": "x" * 64}), OLD_MTIME)
            else:
                rows.append(inline_row(key, func, msgpack.packb({"i": i}), exp, upd))
        create_db(root / f"{name}.db", rows, wal=wal)
        spec.rows[name] = {r[0]: r for r in rows}
        orphans = []
        for j in range(max(5, n // 100)):
            loc = f"orphan{j:05d}.bin"
            write_blob(blob_dir / loc, b"orphan", OLD_MTIME)
            orphans.append(loc)
        spec.orphans[name] = orphans
        temps = []
        for j in range(5):
            loc = f"k{j}.bin.{j:016x}.spot_tmp"
            write_blob(blob_dir / loc, b"partial", OLD_MTIME)
            temps.append(loc)
        spec.temps[name] = temps
    return spec


def expected_survivors(spec: BigSpec, command: str) -> dict[str, set[str]]:
    """Keys per DB that must remain after *command* (computed here, not by the product)."""
    out: dict[str, set[str]] = {}
    now = NOW
    cutoff = dt.datetime.fromisoformat(PRUNE_CUTOFF).replace(tzinfo=UTC)
    for db, rows in spec.rows.items():
        keep = set()
        for key, r in rows.items():
            func, exp, upd = r[2], parse_ts(r[9]), parse_ts(r[10])
            if command == "gc":
                gone = exp is not None and exp < now
            elif command == "prune":
                gone = upd < cutoff
            elif command == "clear":
                gone = func == CLEAR_FUNC
            else:
                raise ValueError(command)
            if not gone:
                keep.add(key)
        out[db] = keep
    return out


COMMANDS = {
    "gc": ["gc"],
    "prune": ["prune", "--older-than", PRUNE_CUTOFF, "--yes"],
    "clear": ["clear", "--func", CLEAR_FUNC, "--yes"],
}


def clone_workspace(src: Path, dst: Path, *, link: bool = True) -> None:
    """A private copy of *src*: DB files copied, blob files hard-linked (cheap, and
    unlinking a link in the copy never touches the master) unless *link* is False."""
    for dirpath, _dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            s, d = Path(dirpath) / name, dst / rel / name
            if link and name.endswith((".bin", ".spot_tmp")):
                os.link(s, d)
            else:
                shutil.copy2(s, d)


# --------------------------------------------------------------------------- running


@dataclass
class Run:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr + self.stdout

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def describe(self) -> str:
        return (
            f"beautyspot {' '.join(map(repr, self.args))} -> {self.returncode}\n"
            f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"
        )


def cli_env(now: str | None = NOW_ENV, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEAUTYSPOT_")}
    env.update(COLUMNS="200", LC_ALL="C.UTF-8", PYTHONUTF8="1")
    if now is not None:
        env["BEAUTYSPOT_NOW"] = now
    env.update(extra)
    return env


def popen(args, *, now: str | None = NOW_ENV, env=None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [BS, *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env or cli_env(now),
        **kw,
    )


def run(args, *, now: str | None = NOW_ENV, env=None, timeout=300, **kw) -> Run:
    """Run the installed command; text output decoded with replacement (never raises)."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [BS, *map(str, args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env or cli_env(now),
        timeout=timeout,
        **kw,
    )
    return Run(
        [str(a) for a in args],
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
        time.monotonic() - t0,
    )


def run_many(arg_lists, *, workers: int = 4, **kw) -> list[Run | None]:
    """Run several invocations concurrently (2 cores: start-up dominates); a run that
    exceeds *timeout* gives None."""
    from concurrent.futures import ThreadPoolExecutor

    def one(args):
        try:
            return run(args, **kw)
        except subprocess.TimeoutExpired:
            return None

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, arg_lists))


def finish(proc: subprocess.Popen, args, t0: float, timeout=300) -> Run:
    out, err = proc.communicate(timeout=timeout)
    return Run(
        [str(a) for a in args],
        proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        time.monotonic() - t0,
    )


# --------------------------------------------------------------------------- inspecting


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def ro_connect(db: Path) -> sqlite3.Connection:
    """Read-only, creating nothing: ``immutable`` when no -wal/-journal file exists (a
    plain read-only open of a WAL DB would create -wal and -shm files)."""
    uri = f"file:{db}?mode=ro"
    if not any(os.path.exists(f"{db}{s}") for s in ("-wal", "-journal")):
        uri += "&immutable=1"
    conn = sqlite3.connect(uri, uri=True)
    conn.text_factory = _text
    return conn


def integrity(db: Path) -> str:
    conn = ro_connect(db)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "ok" if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:5])


def db_rows(db: Path) -> dict[str, tuple]:
    """key -> (func_identifier, result_type, result_value, expires_at, updated_at)."""
    conn = ro_connect(db)
    try:
        return {
            r[0]: tuple(r[1:])
            for r in conn.execute(
                "SELECT cache_key, func_identifier, result_type, result_value, expires_at,"
                " updated_at FROM tasks"
            )
        }
    finally:
        conn.close()


def blob_files(blob_dir: Path, suffix: str = ".bin") -> set[str]:
    """Relative locations of regular files (not symlinks) ending in *suffix*."""
    out = set()
    if not blob_dir.is_dir():
        return out
    for dirpath, _dirs, files in os.walk(blob_dir):
        for name in files:
            p = Path(dirpath) / name
            if name.endswith(suffix) and stat.S_ISREG(os.lstat(p).st_mode):
                out.add(p.relative_to(blob_dir).as_posix())
    return out


@dataclass
class DBState:
    integrity: str
    rows: dict[str, tuple]
    dangling: list[str]  # keys whose blob file is missing
    orphans: set[str]  # .bin files no row names
    temps: set[str]  # *.spot_tmp files
    files: int = 0  # .bin files in the blob dir


def inspect(db: Path, blob_dir: Path) -> DBState:
    try:
        rows = db_rows(db)
        check = integrity(db)
    except sqlite3.OperationalError as exc:
        # E.g. "disk I/O error" from a -shm index left short by a full disk: read a copy
        # of the DB and its -wal (without -shm, which SQLite rebuilds) instead.
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / db.name
            shutil.copy2(db, copy)
            if os.path.exists(f"{db}-wal"):
                shutil.copy2(f"{db}-wal", f"{copy}-wal")
            print(f"note: {db}: {exc}; inspected a copy")
            rows = db_rows(copy)
            check = integrity(copy)
    refs = {r[2] for r in rows.values() if r[2] is not None}
    dangling = [k for k, r in rows.items() if r[2] is not None and not (blob_dir / r[2]).is_file()]
    bins = blob_files(blob_dir)
    return DBState(check, rows, dangling, bins - refs, blob_files(blob_dir, ".spot_tmp"), len(bins))


def snapshot(root: Path, *, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Every entry under *root*: relative path -> (kind, size, mtime_ns, sha256 | link)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if any(rel.endswith(s) for s in skip):
                continue
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                out[rel] = ("file", st.st_size, st.st_mtime_ns, digest)
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode))
    return out


def snapshot_diff(before: dict, after: dict) -> list[str]:
    diffs = []
    for k in sorted(set(before) | set(after)):
        if before.get(k) != after.get(k):
            diffs.append(f"{k}: {before.get(k)} -> {after.get(k)}")
    return diffs


def schema_sql(db: Path) -> list[tuple]:
    conn = ro_connect(db)
    try:
        return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()


def summary(name: str, **figures) -> str:
    """The one-line figure summary a test prints (and the session summary repeats)."""
    return f"RELIABILITY {name}: " + " ".join(f"{k}={v}" for k, v in figures.items())
