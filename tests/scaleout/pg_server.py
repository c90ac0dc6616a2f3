"""A throw-away PostgreSQL server for the scale-out tests and bench, and its fixtures.

Not a ``conftest.py``: the root ``tests/conftest.py`` is imported as module ``conftest``
by other suites (``from conftest import FIXTURE_NOW``), and a second, package-less
``conftest.py`` here would replace it in ``sys.modules``.  Test modules import the
fixtures from here instead (``*_fixture``; pytest knows them by their ``name``).

The server comes from Debian's ``postgresql`` package (``initdb``/``pg_ctl`` under
``/usr/lib/postgresql/<version>/bin``; ``BEAUTYSPOT_PG_BINDIR`` overrides).  It runs in a
fresh temp dir, listens on a Unix socket in that dir only (``listen_addresses=''``), trusts
every local connection, and is stopped with ``-m immediate`` and removed at the end.
initdb refuses to run as root, so as root the server runs as the ``postgres`` system user.

One server serves the whole session, however many test modules import the fixtures: the
first user starts it, the last one stops it (a session fixture imported into two modules
is two fixture definitions).  Each test gets a database of its own, created from
``template0`` and dropped (``WITH (FORCE)``) afterwards.

Without server binaries (or psycopg) the tests are skipped, unless
``BEAUTYSPOT_REQUIRE_SCALEOUT=1`` (CI), which makes them fail.
"""

from __future__ import annotations

import atexit
import importlib.util
import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections
DEFAULT_PORT = 54329  # only names the socket file: the socket dir is private anyway
SERVICE_USER = "postgres"


class ServerUnavailable(RuntimeError):
    """No PostgreSQL server binaries (or no way to run them) on this machine."""


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``, newest version first."""
    override = os.environ.get("BEAUTYSPOT_PG_BINDIR")
    candidates: list[Path] = []
    if override:
        candidates.append(Path(override))
    else:

        def version(path: Path) -> tuple[int, ...]:
            return tuple(int(p) for p in re.findall(r"\d+", path.parent.name)) or (0,)

        candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    where = override or "/usr/lib/postgresql/*/bin or PATH"
    raise ServerUnavailable(
        f"no PostgreSQL server binaries (initdb, pg_ctl) in {where}: "
        "install Debian's 'postgresql' package (.ci/setup-postgres does)"
    )


def _run_as_prefix() -> tuple[list[str], int | None, int | None]:
    """Command prefix, uid and gid to run the server as (root is refused by initdb)."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise ServerUnavailable(
            f"running as root and there is no {SERVICE_USER!r} user to run the server as"
        ) from None
    if shutil.which("runuser"):
        prefix = ["runuser", "-u", SERVICE_USER, "--"]
    elif shutil.which("setpriv"):
        prefix = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups"]
    else:
        raise ServerUnavailable("running as root and neither runuser nor setpriv is available")
    return prefix, entry.pw_uid, entry.pw_gid


class PgServer:
    """One PostgreSQL cluster in a temp dir, on a Unix socket there."""

    def __init__(self, *, fsync: bool = False, port: int = DEFAULT_PORT):
        self.bindir = find_bindir()
        self.prefix, uid, gid = _run_as_prefix()
        self.port = port
        self.fsync = fsync
        # Short, under /tmp: a Unix socket path must fit in 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="bs-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.started = False
        if uid is not None:
            os.chown(self.root, uid, gid)
        os.chmod(self.root, 0o700)

    # -- life cycle ------------------------------------------------------------------

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
        )

    def start(self) -> PgServer:
        done = self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            SERVICE_USER,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        if done.returncode:
            self.remove()
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        settings = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.root}'",
            "port": str(self.port),
            "max_connections": "200",
            "fsync": "on" if self.fsync else "off",
            "synchronous_commit": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
            "log_min_messages": "warning",
        }
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# beautyspot test server\n")
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
        done = self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(START_TIMEOUT),
            "start",
            timeout=START_TIMEOUT + 30,
        )
        if done.returncode:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            self.remove()
            raise RuntimeError(f"pg_ctl start failed ({done.returncode}):\n{done.stderr}{tail}")
        self.started = True
        return self

    def stop(self) -> None:
        if self.started:
            self.started = False
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        self.remove()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases -------------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SERVICE_USER}@/{dbname}?host={self.root}&port={self.port}"

    def admin(self):
        import psycopg

        return psycopg.connect(self.url(), autocommit=True)

    def create_database(self, name: str) -> str:
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- shared server

_lock = threading.Lock()
_shared: PgServer | None = None
_users = 0
_names = itertools.count(1)


def acquire_server() -> PgServer:
    """The session's server, started on first use (one per process)."""
    global _shared, _users
    with _lock:
        if _shared is None:
            server = PgServer().start()
            atexit.register(server.stop)  # should the session end without teardown
            _shared = server
        _users += 1
        return _shared


def release_server() -> None:
    global _shared, _users
    with _lock:
        _users -= 1
        if _users == 0 and _shared is not None:
            _shared.stop()
            _shared = None


def new_database_name() -> str:
    return f"t{os.getpid()}_{next(_names)}"


# --------------------------------------------------------------------------- fixtures

try:
    import pytest
except ImportError:  # the bench imports this module without pytest
    pytest = None  # type: ignore[assignment]


def require_postgres() -> None:
    """Skip (or, with BEAUTYSPOT_REQUIRE_SCALEOUT=1, fail) without psycopg or a server."""
    reasons = []
    missing = [m for m in ("psycopg", "psycopg_pool") if importlib.util.find_spec(m) is None]
    if missing:
        reasons.append(
            f"PostgreSQL tests need {', '.join(missing)}: pip install 'beautyspot[test]'"
        )
    try:
        find_bindir()
        _run_as_prefix()
    except ServerUnavailable as exc:
        reasons.append(str(exc))
    if not reasons:
        return
    reason = "; ".join(reasons)
    if os.environ.get("BEAUTYSPOT_REQUIRE_SCALEOUT") == "1":
        pytest.fail(f"BEAUTYSPOT_REQUIRE_SCALEOUT=1 but {reason}", pytrace=False)
    pytest.skip(reason)


if pytest is not None:

    @pytest.fixture(scope="session", name="pg_server")
    def pg_server_fixture() -> Iterator[PgServer]:
        """A PostgreSQL server on a private Unix socket, for the whole session."""
        require_postgres()
        server = acquire_server()
        try:
            yield server
        finally:
            release_server()

    @pytest.fixture(name="pg_url")
    def pg_url_fixture(pg_server: PgServer) -> Iterator[str]:
        """The URL of a new, empty database, dropped after the test."""
        name = new_database_name()
        url = pg_server.create_database(name)
        yield url
        pg_server.drop_database(name)
